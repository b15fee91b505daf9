"""`PreviewEngine`: every run answered with a real, honest animatic, on any CPU, offline.

    generate(request, progress)
      1. read the prompt into a Scene                 scene.describe_scene
      2. compose the soundtrack in a thread while     soundtrack.compose_soundtrack
         the stage is painted (or images fitted)      frames.film_scene / film_images
      3. render frames in a producer thread while     producer.FrameProducer
         the encoder consumes them                    media.video.write_mp4
      4. return output.mp4 and what was drawn         GenerationResult

With `generate_audio` false the clip is silent and carries no subtitles: subtitles caption
what is heard, and nothing is spoken (this also spares the speech synthesis).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.errors import GenerationFailed, RunCanceled, RunFailure

from .frames import Film, Frame, Overlays, film_images, film_scene
from .producer import FrameProducer
from .scene import Scene, describe_scene

if TYPE_CHECKING:
    from .soundtrack import Soundtrack

__all__ = ["PreviewEngine"]

_PROGRESS_STEP: Final = 0.05
# libx264 presets that keep CABAC and 8x8 transforms: "ultrafast" drops both, and its
# stream is Constrained Baseline, not the High profile the contract promises.
_PRESETS: Final = (
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)


class PreviewEngine:
    """The default engine: a deterministic animatic with synthesized speech, no weights.

    `preset` and `crf` go to the H.264 encoder (tests use "superfast" to stay quick).
    The same request and seed give identical frames and audio samples.
    """

    name = "preview"

    def __init__(self, *, preset: str = "veryfast", crf: int = 20) -> None:
        if preset not in _PRESETS:
            raise ValueError(f"preset must be one of {', '.join(_PRESETS)}, got {preset!r}")
        self.preset = preset
        self.crf = crf

    def setup(self) -> None:
        """Nothing to load; warm the font cache so that the first run pays no font lookup."""
        from .overlays import load_font

        load_font(24)

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        """Render `request` into `scratch_dir/output.mp4`; raise `RunCanceled` when told to.

        `progress.should_stop()` is asked before every frame, so a cancel takes effect
        within a frame's time (tens of milliseconds).
        """
        output = request.scratch_dir / "output.mp4"
        try:
            return self._generate(request, progress, output)
        except RunFailure:
            output.unlink(missing_ok=True)
            raise
        except Exception as exc:
            output.unlink(missing_ok=True)
            raise GenerationFailed(f"the preview engine failed: {exc}") from exc

    def _generate(
        self, request: GenerationRequest, progress: ProgressSink, output: Path
    ) -> GenerationResult:
        from runbase.media.video import write_mp4

        # 1. The scene.
        _check_stop(progress)
        progress.progress(0.0, "composing the scene")
        camera_fixed = bool(request.input.get("camera_fixed", False))
        scene = describe_scene(request.prompt, seed=request.seed, camera_fixed=camera_fixed)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview-audio") as pool:
            # 2. The soundtrack in a thread while the stage is painted; the audio covers
            #    the whole last frame, as the writer expects: num_frames / fps seconds.
            composing: Future[Soundtrack] | None = None
            if request.audio:
                duration = request.num_frames / request.fps
                composing = pool.submit(_compose, request.prompt, duration, request.seed)
            film = _make_film(request, scene)

            # 3. Rendering starts now; the overlays follow once the spoken lines are known.
            overlays: Future[Overlays] = Future()
            producer = FrameProducer(film, overlays)
            try:
                soundtrack = composing.result() if composing is not None else None
                lines = soundtrack.lines if soundtrack is not None else ()
                overlays.set_result(
                    Overlays.build(film.size[0], film.size[1], film.num_frames, request.fps, lines)
                )
                for note in soundtrack.notes if soundtrack is not None else ():
                    progress.log(note)
                _check_stop(progress)
                progress.progress(0.05, "rendering")
                write_mp4(
                    output,
                    _report_progress(producer.frames(), film.num_frames, progress),
                    width=request.width,
                    height=request.height,
                    fps=request.fps,
                    num_frames=request.num_frames,
                    audio=soundtrack.samples if soundtrack is not None else None,
                    preset=self.preset,
                    crf=self.crf,
                )
            finally:
                producer.close()
        progress.progress(1.0, "done")

        # 4. What was drawn.
        metadata: dict[str, Any] = {
            "preview": True,
            "scene": scene.kind,
            "camera": scene.camera,
            "time_of_day": scene.time_of_day,
            "colours": list(scene.colours),
            "images": len(request.images),
            "ambience": soundtrack.ambience if soundtrack is not None else None,
            "music": soundtrack.has_music if soundtrack is not None else False,
            "dialogue": [
                {"text": x.text, "language": x.language, "start": x.start, "end": x.end}
                for x in lines
            ],
        }
        return GenerationResult(files=(output,), metadata=metadata)


def _compose(prompt: str, duration: float, seed: int) -> Soundtrack:
    from .soundtrack import compose_soundtrack

    return compose_soundtrack(prompt, duration=duration, seed=seed)


def _make_film(request: GenerationRequest, scene: Scene) -> Film:
    """The image film when the request has images, else the procedural film of `scene`."""
    if request.images:
        from runbase.media.images import fit_image

        fitted = [fit_image(image, request.width, request.height) for image in request.images[:2]]
        return film_images(fitted, scene.camera, request.num_frames, request.fps)
    return film_scene(scene, request.width, request.height, request.num_frames, request.fps)


def _check_stop(progress: ProgressSink) -> None:
    if progress.should_stop():
        raise RunCanceled()


def _report_progress(
    frames: Iterator[Frame], total: int, progress: ProgressSink
) -> Iterator[Frame]:
    """Pass frames through, asking whether to stop before each and reporting every 5%.

    Progress runs from 0.05 to 0.95 over the frames; 1.0 comes once the file is written.
    """
    reported = 0.05
    for index, frame in enumerate(frames):
        _check_stop(progress)
        yield frame
        fraction = 0.05 + 0.9 * (index + 1) / total
        if fraction - reported >= _PROGRESS_STEP - 1e-9:
            progress.progress(round(fraction, 4), "rendering")
            reported = fraction
