"""What the compiled programs are keyed by (``mjxmeta.algo.config.program_fields``, ``Programs._key``).

A resume may change only ``total_steps``; the stored traced programs must serve it (the key ignores the
fields only the host loop reads), except where a program reads the budget (``student.lr_decay`` < 1).
"""

from __future__ import annotations

import dataclasses

from mjxmeta.algo.config import Config, StudentConfig, executed_iterations, num_chunks
from mjxmeta.algo.config import program_fields as program_key


def test_host_only_fields_do_not_key_the_programs():
    c = Config()
    for change in ({"total_steps": 100_000}, {"eval_every": 8000}, {"checkpoint_every": 40}, {"keep": 5}):
        assert program_key(dataclasses.replace(c, **change)) == program_key(c), change
    for change in ({"seeds": 8}, {"log_every": 5}, {"eval_envs": 3}, {"env": "pendulum"}):
        assert program_key(dataclasses.replace(c, **change)) != program_key(c), change


def test_the_budget_keys_the_programs_when_they_read_it():
    c = Config(student=StudentConfig(lr_decay=0.1))
    assert program_key(dataclasses.replace(c, total_steps=100_000)) != program_key(c)


def test_one_chunk_count():
    c = Config(total_steps=50_000)  # 800 env steps per iteration -> 63 iterations -> 7 chunks of 10
    assert num_chunks(c) == 7 and executed_iterations(c) == 70
