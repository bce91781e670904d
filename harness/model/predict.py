"""What a prediction is: a value, an interval of named terms, a curve (release.py makes them)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Term:
    """One thing the model cannot know, with what it can do to the measured drop."""
    name: str
    explanation: str
    lo_mib: float     # <= 0: how much lower the drop could be
    hi_mib: float     # >= 0: how much higher

    def to_json(self) -> dict:
        return {"name": self.name, "explanation": self.explanation,
                "lo_mib": round(self.lo_mib, 2), "hi_mib": round(self.hi_mib, 2)}


@dataclass(frozen=True)
class Prediction:
    expected_mib: float
    lo_mib: float
    hi_mib: float
    metric: str                                   # "rss" (QEMU process) or "mapping" (guest RAM)
    terms: tuple[Term, ...]
    curve: tuple[tuple[float, float], ...]        # (seconds after the free, cumulative MiB)
    reported_curve: tuple[tuple[float, float], ...]   # guest side: MiB reported so far
    total_mib: float                              # drop once every pass has run
    rss_mib: float                                # process RSS drop by the end
    mapping_mib: float                            # guest RAM mapping drop by the end
    per_zone: dict = field(default_factory=dict)
    per_order: dict = field(default_factory=dict)
    passes: tuple[dict, ...] = ()
    why: tuple[str, ...] = ()
    inputs: dict = field(default_factory=dict)

    def at(self, t: float) -> float:
        """Cumulative predicted drop t seconds after the free."""
        v = 0.0
        for ti, c in self.curve:
            if ti > t:
                break
            v = c
        return v

    def seconds_to_fraction(self, frac: float) -> float | None:
        """When the predicted drop first reaches frac of its total (None if it never drops)."""
        if self.total_mib <= 0:
            return None
        for t, c in self.curve:
            if c >= frac * self.total_mib - 1e-9:
                return t
        return None

    def to_json(self) -> dict:
        return {
            "expected_mib": round(self.expected_mib, 2), "lo_mib": round(self.lo_mib, 2),
            "hi_mib": round(self.hi_mib, 2), "metric": self.metric,
            "total_mib": round(self.total_mib, 2), "rss_mib": round(self.rss_mib, 2),
            "mapping_mib": round(self.mapping_mib, 2),
            "seconds_to_90pct": _rounded(self.seconds_to_fraction(0.9), 3),
            "terms": [t.to_json() for t in self.terms],
            "curve": [[round(t, 3), round(c, 2)] for t, c in self.curve],
            "reported_curve": [[round(t, 3), round(c, 2)] for t, c in self.reported_curve],
            "per_zone": self.per_zone, "per_order": {str(k): v for k, v in self.per_order.items()},
            "passes": list(self.passes), "why": list(self.why), "inputs": self.inputs,
        }


def verdict(measured_mib: float, prediction: Prediction) -> str:
    return "within" if prediction.lo_mib <= measured_mib <= prediction.hi_mib else "outside"


def _rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)
