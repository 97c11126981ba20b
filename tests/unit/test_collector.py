"""The server's garbage-collector settings (collector.py)."""

from __future__ import annotations

import gc

import pytest
from heedls.server.collector import YOUNG_THRESHOLD, as_in_the_server, settle


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_server_collects_the_young_generation_less_often_and_never_more(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    settle()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0  # what start-up loaded is out of the collector's reach
    gc.set_threshold(50_000, 5, 5)
    settle()
    assert gc.get_threshold() == (50_000, 5, 5)  # a higher threshold someone chose stays
    gc.set_threshold(0, 10, 10)
    settle()
    assert gc.get_threshold()[0] == 0  # collection switched off stays off


def test_a_benchmark_borrows_the_settings_and_gives_them_back(restore_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    with as_in_the_server():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD and gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
