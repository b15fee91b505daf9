"""Text drawn over preview frames: the subtitles of the spoken lines and the PREVIEW mark.

Text is rasterised once per clip into RGBA sprites, so a frame only pays for one masked
paste of the sprite's bounding box (about 0.1 ms at 720p), never for text layout.

Subtitles use Noto Sans CJK, which covers Latin, Chinese and Japanese; without it they fall
back to DejaVu and then to Pillow's built-in font (Latin only: CJK text would show boxes).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = ["Sprite", "SubtitleTrack", "TimedText", "load_font", "render_mark"]

_FONT_FILES: Final = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
)
MARK_TEXT: Final = "PREVIEW"
# The mark is faint on purpose: it must stay visible yet cost image clips under a dB of
# first/last-frame PSNR (see frames.py), so it is white at ~40% with a ~20% dark outline.
_MARK_FILL_ALPHA: Final = 104
_MARK_STROKE_ALPHA: Final = 48
_SUBTITLE_BOX_ALPHA: Final = 120
_MAX_SUBTITLE_ROWS: Final = 3

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class TimedText(Protocol):
    """A spoken line as the soundtrack reports it (`SpokenLine` satisfies this)."""

    @property
    def text(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


@dataclass(frozen=True)
class Sprite:
    """An RGBA image and where its top-left corner goes on the frame."""

    image: Image.Image
    x: int
    y: int

    def paste_onto(self, frame: Image.Image) -> None:
        frame.paste(self.image, (self.x, self.y), self.image)


@functools.lru_cache(maxsize=32)
def load_font(size: int) -> Font:
    """The first installed font of `_FONT_FILES` at `size` px, else Pillow's own."""
    for path in _FONT_FILES:
        if path.exists():
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:
                continue
    return ImageFont.load_default(size=size)


def _text_sprite(
    lines: Sequence[str], font: Font, *, fill_alpha: int, stroke_alpha: int, box_alpha: int
) -> Image.Image:
    """White text with a dark outline (and an optional dark box), centred line by line.

    The colour and the alpha are built as separate masks and joined at the end, so the
    antialiased edges keep their true colour instead of fading through black.
    """
    size = font.size if isinstance(font, ImageFont.FreeTypeFont) else 12
    stroke = max(1, round(size / 14))
    pad_x, pad_y = round(size * 0.5), round(size * 0.22)
    line_height = round(size * 1.3)
    widths = [max(1, round(font.getlength(line))) for line in lines]
    width = max(widths) + 2 * pad_x
    height = line_height * len(lines) + 2 * pad_y

    fill = Image.new("L", (width, height), 0)
    outline = Image.new("L", (width, height), 0)
    draw_fill, draw_outline = ImageDraw.Draw(fill), ImageDraw.Draw(outline)
    for row, (line, line_width) in enumerate(zip(lines, widths, strict=True)):
        xy = ((width - line_width) // 2, pad_y + row * line_height)
        draw_outline.text(xy, line, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        draw_fill.text(xy, line, font=font, fill=255)

    alpha = outline.point(lambda v: v * stroke_alpha // 255)
    if box_alpha:
        alpha = ImageChops.lighter(alpha, Image.new("L", (width, height), box_alpha))
    alpha = ImageChops.lighter(alpha, fill.point(lambda v: v * fill_alpha // 255))
    sprite = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    sprite.paste((255, 255, 255), (0, 0), fill)
    sprite.putalpha(alpha)
    return sprite


def render_mark(width: int, height: int) -> Sprite:
    """The small faint PREVIEW mark for the top-right corner of a `width` x `height` frame."""
    font = load_font(max(9, round(min(width, height) * 0.026)))
    image = _text_sprite(
        [MARK_TEXT],
        font,
        fill_alpha=_MARK_FILL_ALPHA,
        stroke_alpha=_MARK_STROKE_ALPHA,
        box_alpha=0,
    )
    margin = max(4, round(min(width, height) * 0.02))
    return Sprite(image, width - image.width - margin, margin)


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def _wrap_text(text: str, font: Font, max_width: float) -> list[str]:
    """Break `text` into rows no wider than `max_width`: at spaces, or between CJK glyphs."""
    tokens: list[str] = []
    for word in text.split(" "):
        if any(_is_wide(c) for c in word):
            tokens.extend([*word[:-1], word[-1] + " "])  # CJK breaks between any glyphs
        else:
            tokens.append(word + " ")
    rows: list[str] = []
    current = ""
    for token in tokens:
        candidate = current + token
        if current and font.getlength(candidate.rstrip()) > max_width:
            rows.append(current.rstrip())
            current = token
        else:
            current = candidate
    if current.strip():
        rows.append(current.rstrip())
    if len(rows) > _MAX_SUBTITLE_ROWS:
        rows = [*rows[: _MAX_SUBTITLE_ROWS - 1], rows[_MAX_SUBTITLE_ROWS - 1] + "…"]
    return rows


class SubtitleTrack:
    """One sprite per spoken line, shown while the line is spoken, bottom centre."""

    def __init__(self, lines: Sequence[TimedText], width: int, height: int) -> None:
        font = load_font(max(12, round(min(width, height) * 0.045)))
        bottom = height - round(height * 0.06)
        self._cues: list[tuple[float, float, Sprite]] = []
        for line in lines:
            rows = _wrap_text(line.text.strip(), font, width * 0.86)
            if not rows:
                continue
            image = _text_sprite(
                rows, font, fill_alpha=255, stroke_alpha=200, box_alpha=_SUBTITLE_BOX_ALPHA
            )
            sprite = Sprite(image, (width - image.width) // 2, bottom - image.height)
            self._cues.append((line.start, line.end, sprite))

    def __len__(self) -> int:
        return len(self._cues)

    def sprite_at(self, time: float) -> Sprite | None:
        """The sprite of the line being spoken at `time` seconds, if any."""
        for start, end, sprite in self._cues:
            if start <= time < end:
                return sprite
        return None
