"""Where the terminal client connects, and with which key: flags, the environment and a config file of profiles.

The file is ``$JOBLENS_CONFIG``, else ``$XDG_CONFIG_HOME/joblens/config.toml``, else
``~/.config/joblens/config.toml``::

    default_profile = "local"

    [profiles.local]
    url = "http://127.0.0.1:8080"
    api_key_file = "~/.config/joblens/local.key"   # or api_key_env = "LOCAL_JOBLENS_KEY", or api_key = "emit_…"

    [profiles.prod]
    url = "https://joblens.example.com"
    api_key_env = "PROD_JOBLENS_KEY"
    space = "01J…"                                  # the default space (else: the key's own)

Precedence: ``--url``; then the profile named by ``--profile`` or ``JOBLENS_PROFILE``; then ``JOBLENS_URL`` and
``JOBLENS_API_KEY``; then the file's default profile. The key is never taken from a command-line flag (it would
show in ``ps`` and in the shell's history).
"""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROFILE_FIELDS = frozenset({"url", "api_key", "api_key_file", "api_key_env", "space"})


class ConfigError(Exception):
    """The configuration is missing something or holds something wrong: a message for a person."""


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    api_key: str
    space: str | None  # the profile's default space, if it names one

    def __repr__(self) -> str:  # never the key
        return f"Target(url={self.url!r}, space={self.space!r})"


def config_path(env: Mapping[str, str]) -> Path:
    if env.get("JOBLENS_CONFIG"):
        return Path(env["JOBLENS_CONFIG"]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "joblens" / "config.toml"


def load_profiles(path: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The profiles of the file and the name of its default profile; none when there is no file."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise ConfigError(f"{path}: [profiles.<name>] tables are expected")
    for name, profile in profiles.items():
        unknown = sorted(set(profile) - PROFILE_FIELDS)
        if unknown:
            raise ConfigError(f"{path}: profile {name!r} has an unknown field {unknown[0]!r}")
    default = document.get("default_profile")
    if default is not None and default not in profiles:
        raise ConfigError(f"{path}: default_profile {default!r} is not a profile")
    _warn_if_readable(path, profiles)
    return profiles, default


def _warn_if_readable(path: Path, profiles: dict[str, dict[str, Any]]) -> None:
    if any("api_key" in profile for profile in profiles.values()):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"joblens: warning: {path} holds an API key and others may read it (chmod 600)", file=sys.stderr)


def key_of(profile: Mapping[str, Any], name: str, env: Mapping[str, str]) -> str | None:
    if "api_key" in profile:
        return str(profile["api_key"])
    if "api_key_file" in profile:
        path = Path(str(profile["api_key_file"])).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"profile {name!r}: cannot read api_key_file {path}: {exc.strerror}") from None
    if "api_key_env" in profile:
        variable = str(profile["api_key_env"])
        if not env.get(variable):
            raise ConfigError(f"profile {name!r}: the environment variable {variable} (api_key_env) is not set")
        return env[variable]
    return None


def resolve(url: str | None, profile: str | None, env: Mapping[str, str] | None = None) -> Target:
    """Where to connect, from the flags (``--url``, ``--profile``), the environment and the config file."""
    env = os.environ if env is None else env
    path = config_path(env)
    profiles, default = load_profiles(path)
    chosen = profile or env.get("JOBLENS_PROFILE") or None
    if chosen is not None and chosen not in profiles:
        known = ", ".join(sorted(profiles)) or f"none: {path} has no profiles"
        raise ConfigError(f"no profile {chosen!r} (profiles: {known})")
    named = profiles.get(chosen, {}) if chosen else {}
    fallback_name = default or "default"
    fallback = profiles.get(fallback_name, {}) if chosen is None else {}
    found_url = url or named.get("url") or env.get("JOBLENS_URL") or fallback.get("url")
    if not found_url:
        raise ConfigError(f"no joblens URL: set JOBLENS_URL, pass --url, or add a profile to {path}")
    api_key = key_of(named, str(chosen), env) if named else None
    api_key = api_key or env.get("JOBLENS_API_KEY") or key_of(fallback, fallback_name, env)
    if not api_key:
        raise ConfigError(f"no API key: set JOBLENS_API_KEY, or give the profile an api_key_file ({path})")
    space = named.get("space") if named else fallback.get("space")
    return Target(str(found_url), api_key, None if space is None else str(space))
