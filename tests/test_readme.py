"""The README's configuration reference cannot drift from the code: the worker options table is
generated from workers/kinds.py, and every key of every section is documented."""
import re

from supervisor.config import SUPERVISOR_KEYS, WORKER_KEYS
from tests import readme_options
from workers import kinds


def configuration_section():
    text = readme_options.README.read_text()
    return text[text.index("\n## Configuration\n"):text.index("\n## HTTP API\n")]


def test_the_worker_options_table_is_the_one_generated_from_the_kinds():
    assert readme_options.current(readme_options.README.read_text()) == readme_options.table(), \
        "README.md's worker options are out of date: run .venv/bin/python -m tests.readme_options"


def test_the_table_lists_every_option_of_every_kind():
    table = readme_options.table()
    for name, kind in kinds.KINDS.items():
        for key in kind.options:
            assert re.search(rf"^\| `{key}` \| [^|]*`{name}`", table, re.M), (name, key)


def test_every_key_of_every_section_is_documented_in_configuration():
    section = configuration_section()
    documented = set(re.findall(r"`([a-z_]+)", section))
    expected = {f"[supervisor] {k}" for k in SUPERVISOR_KEYS} | {f"[workers.NAME] {k}" for k in WORKER_KEYS} | {
        f"[{name}] {key}" for name, spec in kinds.SECTIONS.items() for key in spec.keys}
    missing = sorted(e for e in expected if e.split()[1] not in documented)
    assert not missing, f"README.md's Configuration does not document {missing}"
