"""Fixtures of the reconstruction tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread for the test (fits are faster so on a shared 2-core machine), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
