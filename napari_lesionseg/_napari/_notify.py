"""How the docks report a worker's failure: a user's problem as one notification, a bug with its traceback."""

from __future__ import annotations

from napari.utils.notifications import show_error

from napari_lesionseg.errors import LesionSegError

__all__ = ["notify_or_raise"]


def notify_or_raise(err: BaseException, *user_errors: type[BaseException]) -> None:
    """Show `err` as a napari error notification if it is a `LesionSegError` (or one of `user_errors`); else re-raise.

    A bug, not bad input, keeps its traceback in napari's console and log.
    """
    if isinstance(err, (LesionSegError, *user_errors)):
        show_error(str(err))
    else:
        raise err
