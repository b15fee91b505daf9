"""The preview engine: a deterministic animatic with real synthesized speech, no weights.

It answers every seedance-1.5-pro run on any CPU, offline, honouring the whole output
contract (size, frame count, fps, codecs, audio track, first/last frame fidelity), and
says what it is: the run's `backend` is "preview" and every frame carries a PREVIEW mark.

    scene      the prompt read for place, light, colours and camera move
    layers     drawing primitives for the stages
    outdoor    the shared sky, and the sky and sea stages
    places     the city and forest stages
    studio     the interior (product shot) and abstract stages
    overlays   subtitles and the PREVIEW mark
    frames     the camera over a stage or over the user's images
    producer   frames rendered in a thread, ahead of the encoder
    dialogue   the prompt's quoted lines; languages tells each line's language
    speech     each line spoken (espeak-ng, out of process)
    ambience   rain, sea, wind, city, forest, fire or room tone, from noise
    music      a pad and an arpeggio, when the prompt asks for music
    soundtrack the lines placed and fitted, over ambience and music, mixed
    engine     PreviewEngine: soundtrack + frames -> output.mp4
"""

from __future__ import annotations

from .engine import PreviewEngine

__all__ = ["PreviewEngine"]
