import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps an example database and caches in ./.hypothesis: not in the checkout. A test
# leaves nothing outside its tmp dir.
settings.register_profile("mdw", database=None)
settings.load_profile("mdw")
HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="mdw-hypothesis-")
set_hypothesis_home_dir(HYPOTHESIS_HOME)


def pytest_unconfigure(config):
    shutil.rmtree(HYPOTHESIS_HOME, ignore_errors=True)

from tests.api_support import app, control, filled_store, make_app, state_dir  # noqa: F401 (API test fixtures)
from tests.proctree import Tree


@pytest.fixture
def make_tree(tmp_path):
    """Create real supervisor trees; every process they started is killed when the test ends."""
    trees = []

    def make(workers, sections=None, **supervisor):
        tree = Tree(tmp_path, workers, sections, **supervisor)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.kill_everything()
