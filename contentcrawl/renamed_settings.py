"""Settings renamed to their component's prefix: the old names still work, with a warning.

``RENAMED_SETTINGS`` maps each old name to its new one. An old name in the environment or a
``.env`` file is read by ``contentcrawl/settings.py`` when the new name is not set there. An
old name given with ``-s``, in a spider's ``custom_settings`` or as a scrapyd job's
``setting`` is moved to its new name by the ``RenamedSettings`` add-on. Either way one
``RenamedSettingWarning`` (a ``FutureWarning``, which Scrapy logs as a WARNING) names both;
when both names are given at the same priority, the new one wins.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

RENAMED_SETTINGS: dict[str, str] = {
    # The backoff of PacingMiddleware and PoliteRetryMiddleware, with the other RETRY_*.
    "BACKOFF_BASE": "RETRY_BACKOFF_BASE",
    "BACKOFF_MAX": "RETRY_BACKOFF_MAX",
    "BACKOFF_JITTER": "RETRY_BACKOFF_JITTER",
    # Dump downloads and imports, not the Progress extension (PROGRESS_LOG_INTERVAL).
    "PROGRESS_INTERVAL": "DUMP_PROGRESS_INTERVAL",
}
OLD_NAMES: dict[str, str] = {new: old for old, new in RENAMED_SETTINGS.items()}


class RenamedSettingWarning(FutureWarning):
    """A setting was given by the name it had before it was renamed."""


def warn_renamed(old: str, where: str) -> None:
    """Say once, for the operator, that ``old`` (found in ``where``) has a new name."""
    warnings.warn(
        f"{old} is renamed {RENAMED_SETTINGS[old]} (found in {where}); the old name still "
        "works for now",
        RenamedSettingWarning,
        stacklevel=3,
    )


class RenamedSettings:
    """Add-on: a setting given by its old name takes its new name, at the same priority."""

    def update_settings(self, settings: BaseSettings) -> None:
        for old, new in RENAMED_SETTINGS.items():
            priority = settings.getpriority(old)
            if priority is None:
                continue
            warn_renamed(old, "the settings")
            if priority > (settings.getpriority(new) or 0):
                settings.set(new, settings[old], priority=priority)
            settings.delete(old, priority=priority)
