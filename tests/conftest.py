import pytest

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
