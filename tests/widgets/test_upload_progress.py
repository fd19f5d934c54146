"""The importers' and attachments' shared progress: bytes with a rate, steps, one thread."""

from __future__ import annotations

import threading

from cpms_widgets.widgets._common import UploadProgress


def test_bytes_then_a_step() -> None:
    up = UploadProgress("cpms-x-progress", text_class="cpms-x-text")
    assert "cpms-x-progress" in up.bar._dom_classes and "cpms-x-text" in up.text._dom_classes
    up.start()
    up.update(5_000_000, 21_000_000)
    assert (up.bar.value, up.bar.max) == (5_000_000, 21_000_000)
    assert up.text.value.startswith("5.0 MB of 21.0 MB (") and up.text.value.endswith("/s)")
    up.update(21_000_000, 21_000_000, when_sent="de-identifying…")
    assert up.text.value.endswith(" — de-identifying…")
    up.update(3, 10, phase="import")
    assert up.bar.description == "Import" and up.text.value == "3 of 10"
    up.finish("done")
    assert up.bar.value == up.bar.max == 10 and up.text.value == "done"
    up.start()
    assert up.bar.value == 0 and up.bar.description == "Upload"


def test_one_transfer_at_a_time() -> None:
    up = UploadProgress("cpms-x-progress")
    gate, runs = threading.Event(), []

    def work() -> None:
        runs.append(1)
        gate.wait(5)

    up.run_in_background(work)
    up.run_in_background(work)  # still running: not started again
    gate.set()
    up.wait(5)
    assert runs == [1]
    up.run_in_background(work)
    up.wait(5)
    assert runs == [1, 1]
