"""The settings the programs of a supervisord config will read, known before supervisord starts.

``deploy/launch.py`` needs them to create the CURVE keys the programs will look for: the programs
run in the config's ``directory`` with its ``environment`` on top of supervisord's own (which is
this process's), so the same is done here before ``services.settings.load_settings``.
"""

from __future__ import annotations

import configparser
import os
import shlex
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from services.settings import Settings, load_settings


def program_context(conf: Path) -> tuple[Path | None, dict[str, str]]:
    """The first program's working directory and its ``environment`` entries."""
    parser = configparser.RawConfigParser()
    parser.read(conf)
    here = str(conf.resolve().parent)
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        directory = parser.get(section, "directory", fallback=None)
        env_line = parser.get(section, "environment", fallback="")
        env = {}
        # supervisord's form: KEY="value",KEY2="value2" (values quoted, commas between)
        lexer = shlex.shlex(env_line.replace("%(here)s", here), posix=True)
        lexer.whitespace = ","
        lexer.whitespace_split = True
        for item in lexer:
            key, _, value = item.partition("=")
            env[key.strip()] = value
        return (Path(directory.replace("%(here)s", here)).resolve() if directory else None), env
    return None, {}


@contextmanager
def _as_programs(conf: Path) -> Iterator[None]:
    directory, env = program_context(conf)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env)
    if directory is not None:
        os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def settings_of(conf: Path) -> Settings:
    """The settings as the config's programs will load them (``SettingsError`` if bad)."""
    with _as_programs(conf):
        return load_settings()
