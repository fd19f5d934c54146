"""Anonymised analysis from a notebook: cohorts, reports, similar cases, registry export.

The anonymisation runs in the case store, never here: these functions ask
the store (as the notebook's user, with its own token) and turn the answers
into pandas objects. A data scientist's token reaches only these anonymised
answers; clinicians and panel members use :func:`similar_cases` over the
cases they may read; coordinators use :func:`registry_export`.

Every answer carries the SHA-256 of its bytes (``X-CPMS-SHA256``), which
the store also writes into the audit trail; the client checks it on arrival.

::

    from cpms_widgets import analysis
    cohort = analysis.load_cohort(k=5)            # pandas DataFrame, k-anonymous
    cohort.attrs["summary"]                       # what was generalised and suppressed
    tables = analysis.report()                    # aggregate tables, small cells hidden
    analysis.similar_cases(["HP:0001250"], top=10)
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from cpms_hub.domain.analysis import DEFAULT_K, DEFAULT_MAX_SUPPRESSION

from .client import CaseStoreClient

__all__ = ["load_cohort", "report", "Report", "similar_cases", "registry_export"]


def _client(client: CaseStoreClient | None) -> CaseStoreClient:
    return client if client is not None else CaseStoreClient.from_env()


def load_cohort(
    k: int = DEFAULT_K,
    *,
    fields: list[str] | None = None,
    quasi_identifiers: list[str] | None = None,
    max_suppression: float = DEFAULT_MAX_SUPPRESSION,
    parquet: str | os.PathLike[str] | None = None,
    client: CaseStoreClient | None = None,
):  # noqa: ANN201 - a pandas DataFrame (pandas is imported on use)
    """The anonymised cohort as a DataFrame; ``.attrs["summary"]`` says what was done.

    With ``parquet=path`` the store sends Parquet, which is also written to
    ``path`` as received (the summary is in the file's ``cpms.summary`` metadata).
    """
    import pandas as pd

    body: dict[str, Any] = {
        "k": k,
        "max_suppression": max_suppression,
        "format": "parquet" if parquet is not None else "json",
    }
    if fields is not None:
        body["fields"] = list(fields)
    if quasi_identifiers is not None:
        body["quasi_identifiers"] = list(quasi_identifiers)
    resp = _client(client).analysis_export("POST", "/analysis/cohort", json=body)
    if parquet is not None:
        Path(parquet).write_bytes(resp.content)
        frame = pd.read_parquet(io.BytesIO(resp.content))
        summary = json.loads(resp.headers["x-cpms-cohort-summary"])
    else:
        data = resp.json()
        frame = pd.DataFrame(data["data"], columns=data["columns"])
        summary = data["summary"]
    frame.attrs["summary"] = summary
    frame.attrs["sha256"] = resp.headers.get("x-cpms-sha256", "")
    return frame


class Report:
    """The aggregate report: the store's tables, as DataFrames, with plots."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def cases(self) -> int:
        return self.data["cases"]

    def _cells(self, table: dict[str, Any]):  # noqa: ANN202
        import pandas as pd

        rows = [
            {**dict(zip(table["columns"], c["key"], strict=True)), "count": c["count"]}
            for c in table["cells"]
        ]
        frame = pd.DataFrame(rows, columns=[*table["columns"], "count"])
        frame["count"] = frame["count"].astype("Int64")  # suppressed cells stay <NA>
        return frame

    @property
    def counts(self):  # noqa: ANN201
        """Cases by disease group, network and year; cells below 5 are <NA>."""
        return self._cells(self.data["counts"])

    @property
    def status(self):  # noqa: ANN201
        return self._cells(self.data["status"])

    @property
    def time_to_outcome(self):  # noqa: ANN201
        import pandas as pd

        return pd.DataFrame(
            self.data["time_to_outcome"]["groups"],
            columns=["disease_group", "n", "p25", "median", "p75"],
        )

    @property
    def outcomes_by_treatment(self):  # noqa: ANN201
        """Signed outcomes by treatment category and result at follow-up (None before any)."""
        table = self.data["outcomes_by_treatment"]
        if not table.get("available"):
            return None
        return self._cells(table)

    def plot_outcomes(self):  # noqa: ANN201 - a matplotlib Figure
        """Results at follow-up by treatment category, stacked; hidden cells left out."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4))
        table = self.outcomes_by_treatment
        shown = table.dropna(subset=["count"]) if table is not None else None
        if shown is not None and len(shown):
            pivot = shown.pivot_table(
                index="treatment", columns="result at follow-up", values="count", aggfunc="sum"
            )
            pivot.plot.barh(ax=ax, stacked=True)
            ax.set_xlabel("signed outcomes")
        else:
            reason = self.data["outcomes_by_treatment"].get("reason", "every cell is below 5")
            ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_title("Result at follow-up by treatment (cells below 5 hidden)")
        fig.tight_layout()
        return fig

    def plot(self):  # noqa: ANN201 - a matplotlib Figure
        """Cases per year by disease group, and time to outcome per group."""
        import matplotlib.pyplot as plt

        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
        counts = self.counts.dropna(subset=["count"])
        if len(counts):
            pivot = counts.pivot_table(
                index="year", columns="disease_group", values="count", aggfunc="sum"
            )
            pivot.plot.bar(ax=left, stacked=True, legend=len(pivot.columns) <= 8)
        left.set_title("Cases per year (cells below 5 hidden)")
        left.set_ylabel("cases")
        timing = self.time_to_outcome
        if len(timing):
            right.barh(timing["disease_group"], timing["median"])
            right.errorbar(
                timing["median"],
                timing["disease_group"],
                xerr=[timing["median"] - timing["p25"], timing["p75"] - timing["median"]],
                fmt="none",
                ecolor="black",
            )
        right.set_title("Days from submission to outcome (median, quartiles)")
        fig.tight_layout()
        return fig


def report(*, client: CaseStoreClient | None = None) -> Report:
    """The aggregate report over the consenting cases."""
    return Report(_client(client).analysis_export("POST", "/analysis/report", json={}).json())


def similar_cases(hpo_terms: list[str], top: int = 10, *, client: CaseStoreClient | None = None):  # noqa: ANN201 - a pandas DataFrame
    """The ``top`` cases most like ``hpo_terms``, best first, with the terms that explain each.

    A data scientist gets anonymised hits (numbered, no case id); clinicians,
    panel members and coordinators get the cases they may read, with their ids
    and the panel members who reviewed them.
    """
    import pandas as pd

    answer = _client(client).similar_cases(hpo_terms, top)
    frame = pd.DataFrame(answer["hits"])
    frame.attrs["mode"] = answer["mode"]
    frame.attrs["searched"] = answer["searched"]
    return frame


def registry_export(
    path: str | os.PathLike[str] | None = None, *, client: CaseStoreClient | None = None
):  # noqa: ANN201 - a pandas DataFrame
    """Coordinators: the network's consenting cases as EU RD Platform common data elements."""
    import pandas as pd

    resp = _client(client).analysis_export("GET", "/exports/registry.csv")
    if path is not None:
        Path(path).write_bytes(resp.content)
    return pd.read_csv(io.BytesIO(resp.content), dtype=str, keep_default_na=False)
