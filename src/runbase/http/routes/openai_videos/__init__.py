"""An OpenAI-compatible Videos API (Sora's shapes) at `/v1/videos`, so that code written
for `openai.OpenAI().videos` runs against runbase with only `base_url` changed.

    POST   /v1/videos                 create (multipart or JSON)     _create, _routes
    GET    /v1/videos                 list, OpenAI's cursor page     _video
    GET    /v1/videos/{id}            the Video object               _video
    DELETE /v1/videos/{id}            delete a finished video; cancel and refund an unfinished one
    GET    /v1/videos/{id}/content    the MP4 (or variant=thumbnail, a JPEG)

A video is a run: the same key, charge, queue, engine and refund. Errors are answered in
OpenAI's envelope by this package alone (`_errors`); every other route keeps Runbase's.
The surface is described for users in docs/compat.md.
"""

from runbase.http.routes.openai_videos._errors import openai_error_response
from runbase.http.routes.openai_videos._routes import router

__all__ = ["openai_error_response", "router"]
