"""The verl releases the plug-in is made for, checked before anything of verl's is touched."""
from __future__ import annotations

import inspect
from typing import Any

#: the verl releases whose private names the plug-in wraps (checked at import)
SUPPORTED_VERL = ">=0.9,<0.10"
#: marks a verl function the plug-in wrapped; its value is the original
WRAPPED = "__ktae_wrapped__"

try:
    import verl
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"ktae.integrations.verl needs verl: pip install \"ktae[verl]\" (verl{SUPPORTED_VERL})"
    ) from err

__all__ = ["SUPPORTED_VERL", "WRAPPED", "UnsupportedVerlError", "check_verl_version", "params", "require"]


class UnsupportedVerlError(ImportError):
    """The installed verl is outside the supported range, or lacks what the plugin wraps."""


def check_verl_version(version: str | None = None) -> str:
    """Raise :class:`UnsupportedVerlError` unless ``version`` (default: the installed verl's) is supported.

    Returns:
        The version string checked.
    """
    version = getattr(verl, "__version__", "unknown") if version is None else version
    try:
        ok = Version(version) in SpecifierSet(SUPPORTED_VERL)
    except InvalidVersion:
        ok = False
    if not ok:
        raise UnsupportedVerlError(
            f"ktae's verl plugin supports verl{SUPPORTED_VERL}, but verl {version} is installed: "
            f"pip install \"verl{SUPPORTED_VERL}\" (or a ktae release made for your verl)"
        )
    return version


def params(func: Any) -> list[str]:
    """The parameter names of ``func`` (of the original under a plug-in wrapper); [] when it has none to read."""
    try:
        return list(inspect.signature(getattr(func, WRAPPED, func)).parameters)
    except (TypeError, ValueError):
        return []


def require(checks: dict[str, bool]) -> None:
    """Raise :class:`UnsupportedVerlError` naming every private verl name that is missing or has changed."""
    missing = [name for name, ok in checks.items() if not ok]
    if missing:
        raise UnsupportedVerlError(
            f"ktae's verl plugin cannot install into verl {getattr(verl, '__version__', 'unknown')}: "
            f"{'; '.join(missing)} not found with the expected signature. Supported: verl{SUPPORTED_VERL} "
            f"(pip install \"verl{SUPPORTED_VERL}\")"
        )


check_verl_version()
