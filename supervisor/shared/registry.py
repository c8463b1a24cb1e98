"""What the supervisor is told about the workers it can run: a Registry, handed in by the entry point.

The supervisor knows no worker kind by itself. The program that assembles
the service (workers/service.py for mdwd) builds a Registry and passes it to
`supervisor.main`; the config loader validates `[workers.NAME]` tables and
the shared sections against it, and a child starts its kind's entry point
by name ("module:function"), imported after fork or preloaded before it.

- `kinds`: name -> Kind: its entry point, its options (validated like every
  other key: a typo is an error naming the key), the shared config sections
  it reads (a change to one restarts exactly the workers that read it), and
  the secret environment variables it may see, whether it is stopped last
  on shutdown (after every other worker has exited: the alerts worker, which
  tells a person about the stop), and what it needs to have any work
  (`needs`: given the merged config tables, None, or why it would have
  nothing to do; such a worker is off unless its table says enabled = true,
  and then the config is refused with that reason).
- `sections`: the shared config tables ([provider], [api]): name -> Section.
- `defaults`: the embedded default configuration, TOML text.
- `secret_env`: environment variables that hold secrets; a child sees only
  those its kind asks for (a name ending in "*" is a prefix).
- `describe`: what `mdwd --check-config` adds about a valid config (for
  mdwd: the request budget the workers will use).

Standard library only.
"""
import dataclasses
import fnmatch
import importlib
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class Option:
    type: Any  # a type or tuple of types accepted from TOML
    default: Any
    help: str
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns what is allowed, or None if fine


@dataclasses.dataclass(frozen=True)
class Kind:
    entry: str  # "package.module:function", called with a WorkerContext
    help: str
    options: dict = dataclasses.field(default_factory=dict)
    sections: tuple = ()  # shared config tables it reads, e.g. ("provider",)
    secrets: tuple = ()  # the secret environment variables it may see, e.g. ("SCHWAB_*",)
    stop_last: bool = False  # on shutdown, stopped once every other worker has exited
    needs: Optional[Callable[[dict], Optional[str]]] = None  # merged tables -> None, or why it has no work

    def load(self):
        return load_entry(self.entry)


@dataclasses.dataclass(frozen=True)
class Section:
    """A shared config table: key -> (accepted types, check), a check of the whole table
    (returning problem lines) run once every key is fine, and the keys never quoted."""

    keys: dict
    check: Optional[Callable[[dict], list]] = None
    hidden: tuple = ()  # keys whose values no message quotes (they may hold a secret: [alerts] urls)


@dataclasses.dataclass(frozen=True)
class Registry:
    kinds: dict
    sections: dict
    defaults: str
    secret_env: tuple = ()
    # What `mdwd --check-config` says about a valid config beyond "ok" (e.g. its request budget): a
    # function of the Config returning lines; a line starting "warning:" is a warning.
    describe: Optional[Callable[[Any], list]] = None

    def with_kinds(self, **kinds):
        """This registry plus more kinds (the drill kinds of tests and benchmarks)."""
        return dataclasses.replace(self, kinds={**self.kinds, **kinds})


def load_entry(entry):
    """The function an entry point "package.module:function" names."""
    module_name, _, function = entry.partition(":")
    return getattr(importlib.import_module(module_name), function)


def hidden_secrets(environ, secret_env, allowed):
    """The names in `environ` that are secrets (`secret_env` patterns) not `allowed` for a kind."""
    def matches(name, patterns):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    return [name for name in environ if matches(name, secret_env) and not matches(name, allowed)]
