import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSIGNMENT = os.path.join(ROOT, "assignments", "keras_flowers_transfer")


@pytest.fixture(scope="session")
def manifest():
    from grader import manifest

    return manifest.load(ASSIGNMENT)


@pytest.fixture(scope="session")
def released(manifest):
    """(Release, playground notebook) of the lab's assignment."""
    from grader import release

    return release.build(manifest)
