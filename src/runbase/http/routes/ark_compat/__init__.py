"""A ModelArk-compatible surface (BytePlus ModelArk and Volcengine Ark video generation
tasks), so that code written for their SDKs runs against runbase with only `base_url` and
the key changed.

    POST   /api/v3/contents/generations/tasks         create -> {"id"}       _create, _routes
    GET    /api/v3/contents/generations/tasks/{id}    the task object        _task
    GET    /api/v3/contents/generations/tasks         list, page_num/page_size and filters
    DELETE /api/v3/contents/generations/tasks/{id}    cancel a queued task, delete a finished one

A task is a run: the same key, charge, queue, engine and refund. Errors are answered in
ModelArk's envelope by this package alone (`_errors`); every other route keeps Runbase's.
The surface is described for users in docs/compat.md.
"""

from runbase.http.routes.ark_compat._errors import ark_error_response
from runbase.http.routes.ark_compat._routes import router

__all__ = ["ark_error_response", "router"]
