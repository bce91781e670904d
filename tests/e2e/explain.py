"""One message for a failed verdict, shared by the end-to-end tests: a CI log then names the
check that failed (total, curve, t90, free memory, layout) and not only the drop."""


def explain(result_or_phase: dict) -> str:
    """Pure: each judged phase's drop, prediction, interval and failures, one line per phase."""
    phases = result_or_phase.get("phases") or [result_or_phase]
    lines = []
    for ph in phases:
        if "predicted_mib" not in ph:
            continue
        fails = ph.get("judgement", {}).get("failures", [])
        terms = "; ".join(f"{t['name']} [{t['lo_mib']}, {t['hi_mib']}]" for t in ph.get("terms", ()))
        lines.append(f"{ph.get('phase', '?')}: drop {ph.get('drop_mib')} MiB, predicted {ph['predicted_mib']} in "
                     f"[{ph['predicted_lo_mib']}, {ph['predicted_hi_mib']}]; failures: {fails or 'none'}; "
                     f"terms: {terms}")
    return "\n".join(lines) or "no judged phase"
