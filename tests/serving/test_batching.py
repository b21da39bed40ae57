"""The micro-batcher on its own: shared calls, errors and give-ups kept per request, the bounded queue."""

import asyncio
import threading

import numpy as np
import pytest

from lenet_tf.serving.batching import Batcher, BatchingOptions, QueueFull


def digits(marker: int, n: int = 1) -> np.ndarray:
    array = np.zeros((n, 28, 28), np.uint8)
    array[:, 0, 0] = marker
    return array


def test_a_failing_request_fails_alone_and_the_others_of_its_batch_get_their_rows():
    calls, gate = [], threading.Event()

    def classify(batch: np.ndarray) -> np.ndarray:
        gate.wait(timeout=10)
        calls.append(len(batch))
        if (batch[:, 0, 0] == 13).any():
            raise ValueError("unlucky digit")
        return np.eye(10, dtype=np.float32)[batch[:, 0, 0] % 10]

    async def scenario():
        batcher = Batcher(classify, BatchingOptions(max_batch_size=8, batch_timeout_micros=0))
        first = batcher.submit(digits(1))  # runs alone, held at the gate while the others queue
        await asyncio.sleep(0.05)
        rest = [batcher.submit(digits(2, 2)), batcher.submit(digits(13)), batcher.submit(digits(4))]
        gate.set()
        outcomes = await asyncio.gather(first, *rest, return_exceptions=True)
        batcher.stop()
        return outcomes

    first, two, bad, four = asyncio.run(scenario())
    assert first.argmax(axis=1).tolist() == [1] and two.argmax(axis=1).tolist() == [2, 2]
    assert isinstance(bad, ValueError) and four.argmax(axis=1).tolist() == [4]
    assert calls == [1, 4, 2, 1, 1], "one shared call of 4 digits failed, then each request ran alone"


def test_the_queue_is_bounded_in_digits_and_a_request_that_gave_up_is_skipped():
    seen, release = [], threading.Event()

    def classify(batch: np.ndarray) -> np.ndarray:
        release.wait(timeout=10)
        seen.extend(batch[:, 0, 0].tolist())
        return np.full((len(batch), 10), 0.1, np.float32)

    async def scenario():
        batcher = Batcher(classify, BatchingOptions(max_batch_size=2, max_enqueued_batches=2))
        running = batcher.submit(digits(1))
        await asyncio.sleep(0.05)
        queued = [batcher.submit(digits(2, 2)), batcher.submit(digits(3)), batcher.submit(digits(4))]
        with pytest.raises(QueueFull):
            batcher.submit(digits(5))
        queued[1].cancel()  # its client left: it never reaches the model
        release.set()
        results = await asyncio.gather(running, queued[0], queued[2])
        batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [len(r) for r in results] == [1, 2, 1] and 3 not in seen and 5 not in seen


def test_the_longest_batch_timeout_is_accepted_and_one_more_is_not():
    assert BatchingOptions(batch_timeout_micros=10_000_000).batch_timeout_micros == 10_000_000
    with pytest.raises(ValueError, match=r"batch_timeout_micros must be in \[0, 10000000\], got 10000001"):
        BatchingOptions(batch_timeout_micros=10_000_001)
