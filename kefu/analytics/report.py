"""The KPI report: plain-text tables (stdout), PNG charts (matplotlib, Agg) and one self-contained HTML file.

Everything rendered goes through :func:`kefu.privacy.mask_pii` once more (the store is masked already),
so no export can carry a phone number, an ID number or an address.
"""
from __future__ import annotations

import base64
import html
import unicodedata
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from kefu.analytics import gaps as gap_mining
from kefu.analytics.kpis import DEFAULT_TZ_OFFSET, METRICS, analyze, compute, load_events
from kefu.privacy import mask_pii

REPORT_DIMENSIONS = ("channel", "hour", "weekday", "intent", "skill_group", "agent", "segment")
DIMENSION_TITLES = {"channel": "渠道 Channel", "hour": "时段 Hour of day", "weekday": "星期 Weekday",
                    "intent": "意图 Intent", "skill_group": "技能组 Skill group", "agent": "客服 Agent",
                    "segment": "客户类型 Segment (new / returning)", "day": "日期 Day"}
# the columns of the per-dimension tables
GROUP_COLUMNS = ("conversations", "containment_rate", "fallback_rate", "handoff_rate", "handoffs",
                 "queue_wait_mean", "queue_wait_p90", "first_response_mean", "handle_time_mean", "ratings",
                 "csat_mean")
SHORT_LABELS = {"conversations": "会话", "containment_rate": "自主解决率", "fallback_rate": "兜底率",
                "handoff_rate": "转人工率", "handoffs": "转人工", "queue_wait_mean": "排队均值",
                "queue_wait_p90": "排队P90", "first_response_mean": "首响均值", "handle_time_mean": "处理均值",
                "ratings": "评价", "csat_mean": "满意度"}
TICKET_COLUMNS = ("tickets", "ticket_completion_rate", "ticket_reopen_rate", "followups_due", "followup_reach_rate")
TICKET_LABELS = ("新建工单", "完结率", "重开率", "应回访", "回访触达率")
_KIND = {key: kind for key, _en, _zh, kind in METRICS}
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "AR PL UMing CN", "Droid Sans Fallback")


@dataclass
class Report:
    since: Optional[datetime]
    until: Optional[datetime]
    channel: Optional[str]
    tz_offset: float
    generated_at: datetime
    overall: Dict[str, Any]
    groups: Dict[str, Dict[str, Dict[str, Any]]]
    daily: Dict[str, Dict[str, Any]]
    gaps: List[gap_mining.GapCluster] = field(default_factory=list)

    def period_text(self) -> str:
        def local(moment: Optional[datetime]) -> str:
            if moment is None:
                return "…"
            return (moment + timedelta(hours=self.tz_offset)).strftime("%Y-%m-%d %H:%M")
        sign = "+" if self.tz_offset >= 0 else "-"
        text = f"{local(self.since)} – {local(self.until)} (UTC{sign}{abs(self.tz_offset):g})"
        return text + (f", channel {self.channel}" if self.channel else "")


# -------------------------------------------------------------------------------------------------
# building

def build_report(session, since: Optional[datetime], until: Optional[datetime], *, channel: Optional[str] = None,
                 tz_offset: float = DEFAULT_TZ_OFFSET, with_gaps: bool = True, progress: bool = False,
                 now: Optional[datetime] = None) -> Report:
    from tqdm import tqdm

    steps = ["load events", "conversations", "overall", *REPORT_DIMENSIONS, "daily"] + (["gaps"] if with_gaps else [])
    bar = tqdm(total=len(steps), desc="report", unit="step", disable=not progress, leave=False)
    try:
        bar.set_postfix_str("load events")
        events = load_events(session, since, until)
        bar.update()
        analysis = analyze(events)
        bar.update()
        overall = compute(analysis, since, until, channel=channel, tz_offset=tz_offset)["all"]
        bar.update()
        groups = {}
        for dimension in REPORT_DIMENSIONS:
            bar.set_postfix_str(dimension)
            groups[dimension] = compute(analysis, since, until, channel=channel, group_by=dimension,
                                        tz_offset=tz_offset)
            bar.update()
        daily = compute(analysis, since, until, channel=channel, group_by="day", tz_offset=tz_offset)
        bar.update()
        clusters: List[gap_mining.GapCluster] = []
        if with_gaps:
            bar.set_postfix_str("gaps")
            candidates = gap_mining.collect_candidates(events, since, until, channel=channel)
            clusters = gap_mining.cluster_candidates(candidates)
            gap_mining.suggest(clusters)
            bar.update()
    finally:
        bar.close()
    return Report(since=since, until=until, channel=channel, tz_offset=tz_offset,
                  generated_at=now or datetime.utcnow(), overall=overall, groups=groups, daily=daily, gaps=clusters)


# -------------------------------------------------------------------------------------------------
# formatting

def format_value(key: str, value: Any) -> str:
    kind = _KIND.get(key, "count")
    if value is None:
        return "—"
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "seconds":
        seconds = int(round(value))
        if seconds < 60:
            return f"{seconds}s"
        if seconds < 3600:
            return f"{seconds // 60}m{seconds % 60:02d}s"
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if kind == "score":
        return f"{value:.2f}"
    if kind == "dist":
        return ", ".join(f"{k}: {v}" for k, v in value.items()) if value else "—"
    return str(value)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - _width(text))
    return gap + text if right else text + gap


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [[mask_pii(str(c)) for c in row] for row in rows]
    headers = [mask_pii(h) for h in headers]
    widths = [max([_width(h)] + [_width(row[i]) for row in cells]) for i, h in enumerate(headers)]
    line = "  ".join(_pad(h, widths[i], i > 0) for i, h in enumerate(headers))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(_pad(c, widths[i], i > 0) for i, c in enumerate(row)) for row in cells]
    return "\n".join(out)


def overview_rows(report: Report) -> List[Tuple[str, str]]:
    return [(f"{zh} {en}", format_value(key, report.overall.get(key))) for key, en, zh, _kind in METRICS]


def group_rows(metrics_by_group: Dict[str, Dict[str, Any]]) -> List[List[str]]:
    """Rows of a per-dimension table; groups with no conversation, handoff or rating are left out (their
    tickets / follow-ups are in the overview and in the tickets table)."""
    return [[label] + [format_value(key, metrics.get(key)) for key in GROUP_COLUMNS]
            for label, metrics in metrics_by_group.items()
            if metrics["conversations"] or metrics["handoffs"] or metrics["ratings"]]


def ticket_rows(metrics_by_group: Dict[str, Dict[str, Any]]) -> List[List[str]]:
    return [[label] + [format_value(key, metrics.get(key)) for key in TICKET_COLUMNS]
            for label, metrics in metrics_by_group.items() if metrics["tickets"] or metrics["followups_due"]]


def format_tables(report: Report, *, gap_examples: int = 3) -> str:
    parts = [f"客服数据报告 KPI report  {report.period_text()}", "",
             text_table(["指标 KPI", "值 Value"], overview_rows(report))]
    for dimension in REPORT_DIMENSIONS:
        parts += ["", f"按{DIMENSION_TITLES[dimension]}",
                  text_table([dimension] + [SHORT_LABELS[k] for k in GROUP_COLUMNS],
                             group_rows(report.groups[dimension]))]
    parts += ["", "工单与回访（按渠道） Tickets and follow-ups by channel",
              text_table(["channel", *TICKET_LABELS], ticket_rows(report.groups["channel"]))]
    if report.gaps:
        parts += ["", "知识缺口 Knowledge gaps (top 5)", gap_mining.describe(report.gaps, top=5, examples=gap_examples)]
    return mask_pii("\n".join(parts)) + "\n"


# -------------------------------------------------------------------------------------------------
# charts

def _setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    cjk = next((name for name in CJK_FONTS if name in available), None)
    if cjk:
        plt.rcParams["font.sans-serif"] = [cjk, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False
    return plt, cjk is not None


def _labels(labels: Sequence[str], cjk: bool) -> Tuple[List[str], Dict[str, str]]:
    """Chart labels; without a CJK font, non-ASCII labels become G1, G2 … (key given in the caption)."""
    if cjk:
        return [mask_pii(label) for label in labels], {}
    out, key = [], {}
    for label in labels:
        if label.isascii():
            out.append(label)
        else:
            alias = f"G{len(key) + 1}"
            key[alias] = mask_pii(label)
            out.append(alias)
    return out, key


@dataclass
class Chart:
    name: str
    title: str
    path: Path
    key: Dict[str, str] = field(default_factory=dict)


def write_charts(report: Report, out_dir: Path) -> List[Chart]:
    plt, cjk = _setup_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts: List[Chart] = []

    def save(fig, name: str, title: str, key: Optional[Dict[str, str]] = None) -> None:
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.savefig(path, dpi=100)
        plt.close(fig)
        charts.append(Chart(name=name, title=title, path=path, key=key or {}))

    def bars_with_rate(name: str, title: str, groups: Dict[str, Dict[str, Any]], rate_key: str,
                       rate_label: str, xlabel: str) -> None:
        labels, key = _labels(list(groups), cjk)
        counts = [groups[g]["conversations"] for g in groups]
        rates = [groups[g][rate_key] * 100 if groups[g][rate_key] is not None else float("nan") for g in groups]
        fig, ax = plt.subplots(figsize=(9, 3.6))
        ax.bar(range(len(labels)), counts, color="#4e79a7", label="conversations")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("conversations")
        ax2 = ax.twinx()
        ax2.plot(range(len(labels)), rates, color="#e15759", marker="o", label=rate_label)
        ax2.set_ylim(0, 105)
        ax2.set_ylabel(f"{rate_label} (%)")
        ax.set_title(title)
        save(fig, name, title, key)

    if report.daily:
        bars_with_rate("daily", "Conversations and containment rate per day", report.daily, "containment_rate",
                       "containment rate", "day")
    if report.groups.get("hour"):
        empty = {"conversations": 0, "handoff_rate": None}
        hours = {f"{h:02d}": report.groups["hour"].get(f"{h:02d}", empty) for h in range(24)}
        bars_with_rate("hourly", "Conversations and handoff rate by hour of day", hours,
                       "handoff_rate", "handoff rate", "hour (local)")
    channels = report.groups.get("channel") or {}
    if channels:
        labels, key = _labels(list(channels), cjk)
        contained = [round((m["containment_rate"] or 0) * m["conversations"]) for m in channels.values()]
        handed = [m["conversations"] - c for m, c in zip(channels.values(), contained)]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.bar(labels, contained, color="#59a14f", label="contained (bot only)")
        ax.bar(labels, handed, bottom=contained, color="#f28e2b", label="handed off")
        ax.set_ylabel("conversations")
        ax.set_title("Conversations by channel")
        ax.legend()
        save(fig, "channels", "Conversations by channel", key)
    reasons = report.overall.get("handoff_reasons") or {}
    if reasons:
        labels, key = _labels(list(reasons), cjk)
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
        ax.barh(labels[::-1], list(reasons.values())[::-1], color="#f28e2b")
        ax.set_xlabel("handoffs")
        ax.set_title("Handoff reasons")
        save(fig, "handoff_reasons", "Handoff reasons", key)
    distribution = report.overall.get("csat_distribution") or {}
    if any(distribution.values()):
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.bar([str(k) for k in distribution], list(distribution.values()), color="#76b7b2")
        ax.set_xlabel("score")
        ax.set_ylabel("ratings")
        ax.set_title(f"CSAT distribution (mean {format_value('csat_mean', report.overall.get('csat_mean'))})")
        save(fig, "csat", "CSAT distribution")
    groups = {g: m for g, m in (report.groups.get("skill_group") or {}).items() if m["queue_wait_mean"] is not None}
    if groups:
        labels, key = _labels(list(groups), cjk)
        xs = range(len(labels))
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.bar([x - 0.2 for x in xs], [m["queue_wait_mean"] / 60 for m in groups.values()], width=0.4,
               label="mean", color="#4e79a7")
        ax.bar([x + 0.2 for x in xs], [m["queue_wait_p90"] / 60 for m in groups.values()], width=0.4,
               label="p90", color="#edc948")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels)
        ax.set_ylabel("minutes")
        ax.set_title("Queue wait by skill group")
        ax.legend()
        save(fig, "queue_wait", "Queue wait by skill group", key)
    return charts


# -------------------------------------------------------------------------------------------------
# HTML

_CSS = """body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ddd;padding:4px 8px;font-size:13px}
th{background:#f3f4f6;text-align:left}td.n{text-align:right}h2{margin-top:28px}figure{margin:12px 0}
figcaption{font-size:12px;color:#555}.gap{margin:6px 0 14px}.muted{color:#777;font-size:12px}"""


def _e(value: Any) -> str:
    return html.escape(mask_pii(str(value)))


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i else ""}>{_e(c)}</td>' for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report, charts: Sequence[Chart]) -> str:
    parts = [f"<!doctype html><html lang=zh-CN><head><meta charset=utf-8><title>客服数据报告</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>客服数据报告 KPI report</h1><p>{_e(report.period_text())}</p>",
             f"<p class=muted>generated {_e(report.generated_at.strftime('%Y-%m-%d %H:%M'))} UTC; "
             f"definitions: docs/analytics.md</p>",
             "<h2>总览 Overview</h2>", _html_table(["指标 KPI", "值 Value"], overview_rows(report))]
    for chart in charts:
        data = base64.b64encode(chart.path.read_bytes()).decode("ascii")
        caption = _e(chart.title)
        if chart.key:
            caption += " — " + _e("; ".join(f"{alias} = {label}" for alias, label in chart.key.items()))
        parts.append(f'<figure><img alt="{_e(chart.title)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{caption}</figcaption></figure>")
    for dimension in REPORT_DIMENSIONS:
        parts.append(f"<h2>按{_e(DIMENSION_TITLES[dimension])}</h2>")
        parts.append(_html_table([dimension] + [SHORT_LABELS[k] for k in GROUP_COLUMNS],
                                 group_rows(report.groups[dimension])))
    parts.append("<h2>工单与回访（按渠道） Tickets and follow-ups by channel</h2>")
    parts.append(_html_table(["channel", *TICKET_LABELS], ticket_rows(report.groups["channel"])))
    if report.gaps:
        parts.append("<h2>知识缺口 Knowledge gaps</h2>")
        for line in gap_mining.describe(report.gaps, top=10, examples=5).splitlines():
            parts.append(f'<div class="{"gap" if line.startswith("#") else "muted"}">{_e(line)}</div>')
    parts.append("</body></html>")
    return "\n".join(parts)  # every dynamic text went through _e (masked, escaped)


def write_report(report: Report, out_dir: Path, *, stamp: Optional[str] = None) -> Tuple[Path, List[Chart]]:
    """PNG charts and ``report.html`` under ``out_dir/report-<stamp>/``; returns the HTML path and charts."""
    target = Path(out_dir) / f"report-{stamp or datetime.now().strftime('%Y%m%d-%H%M%S')}"
    charts = write_charts(report, target)
    path = target / "report.html"
    path.write_text(render_html(report, charts), encoding="utf-8")
    return path, charts
