"""``results/<dataset>/report.html``: one self-contained page (plots embedded as base64 PNG) with the data
summary, the protocol, the final tables, the significance tests, the selected configurations, and every plot
of :mod:`elliot.results.plots`.  Read only from the results folder (:mod:`elliot.results.folder`), so it is
written at the end of every experiment and again, for any old folder, by ``python -m elliot.plots``.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence

from elliot.results.folder import Results, load_results, number
from elliot.results.plots import (RATING_ERRORS, TEST_MARKS, Plot, at, higher_is_better, metric_text, short_model,
                                  validation_value, value_text, varied_params, write_plots)

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:32px}
h3{margin-top:20px}.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.name{max-width:420px;word-break:break-all;font-size:12px}b.best{color:#0a5}
figure{margin:10px 0 18px}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:13px}
figcaption code{word-break:break-all}
.grid{display:flex;flex-wrap:wrap;gap:0 2%}.grid figure{width:49%;margin:6px 0}nav a{margin-right:12px}
details{margin:8px 0}summary{cursor:pointer;color:#245}code{font-size:12px}
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


class Cell(str):
    """Already-escaped HTML for a table cell, with its CSS class."""

    def __new__(cls, text: str, css: str = ""):
        obj = super().__new__(cls, text)
        obj.css = css
        return obj


def fmt(value) -> Cell:
    if isinstance(value, float):
        if not math.isfinite(value):
            return Cell("&ndash;", "num")
        return Cell(f"{value:.0f}" if abs(value) >= 100 and value == int(value) else f"{value:.4f}", "num")
    if isinstance(value, int) and not isinstance(value, bool):
        return Cell(str(value), "num")
    return Cell(esc(value_text(value)))


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(c) -> str:
        c = c if isinstance(c, Cell) else fmt(c)
        return f'<td class="{c.css}">{c}</td>' if c.css else f"<td>{c}</td>"
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(rows: Sequence[Sequence]) -> str:
    """A two-column table without a header: the key as a row header, the value escaped (or a Cell)."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v if isinstance(v, Cell) else esc(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def image(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    where = f"{plot.path.parent.name}/{plot.path.name}" if plot.kind == "training" else plot.path.name
    return (f'<figure><img alt="{esc(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(plot.title)} (<code>plots/{esc(where)}</code>)</figcaption></figure>")


def details(summary: str, body: str, opened: bool = False) -> str:
    return f"<details{' open' if opened else ''}><summary>{esc(summary)}</summary>{body}</details>" if body else ""


# ---- sections -----------------------------------------------------------------------------------------
def data_section(r: Results) -> str:
    s, config = r.data_summary, r.config
    out = []
    if s:
        catalogue = s.get("item_catalogue", "train")
        out.append(f"<p>{s['users']:,} users, {s['items']:,} items (item catalogue <code>{esc(catalogue)}</code>"
                   + (f", {s['cold_items']:,} cold items without a training interaction" if s.get("cold_items") else "")
                   + f"), training density {100 * s.get('train_density', float('nan')):.3f}%.</p>")
        out.append(table(["split", "interactions", "users", "items"],
                         [[split, v["interactions"], v["users"], v["items"]] for split, v in s["splits"].items()]))
    else:
        out.append("<p>No <code>data_summary.json</code> in this folder (runs of this version write it); the "
                   "counts are in the experiment log.</p>")
    sources = {e.get("modality"): e.get("features") for e in (config.get("data_config") or {}).get(
        "side_information") or [] if isinstance(e, dict)}
    modalities = list((s or {}).get("modalities") or {}) or [m for m in sources if m]
    if modalities:
        dims = (s or {}).get("modalities") or {}
        out.append(table(["modality", "dimensions", "features file"],
                         [[m, dims.get(m, {}).get("dim", "?"), sources.get(m) or ""] for m in modalities]))
    else:
        out.append("<p>No item side information (collaborative data only).</p>")
    info = {k: v for k, v in ((s or {}).get("info") or {}).items() if v not in ({}, [], None)}
    if info:
        out.append(details("What the data loading read and dropped", kv_table(
            [[k, Cell(f"<code>{esc(json.dumps(v, default=str))}</code>")] for k, v in info.items()])))
    return "".join(out)


def _describe(block) -> str:
    if not block:
        return "none"
    if isinstance(block, dict):
        return ", ".join(f"{k}={_describe(v) if isinstance(v, (dict, list)) else v}" for k, v in block.items()
                         if v not in (None, [], {}))
    if isinstance(block, list):
        if all(not isinstance(b, (dict, list)) for b in block):
            return "[" + ", ".join(map(str, block)) + "]"
        return "; ".join(_describe(b) for b in block)
    return str(block)


def protocol_section(r: Results) -> str:
    c, ev = r.config, r.evaluation
    if not c:
        return "<p>No resolved configuration (<code>config_&lt;timestamp&gt;.yml</code>) for this run.</p>"
    dc = c.get("data_config") or {}
    sp = c.get("splitting") or {}
    files = {k: dc.get(k) for k in ("train_path", "validation_path", "test_path", "dataset_path") if dc.get(k)}
    catalogue = (r.data_summary or {}).get("item_catalogue") or dc.get("item_catalogue") or "train"
    rating = set(r.metrics) <= set(RATING_ERRORS)
    if rating:
        candidates = "rating prediction: errors over every (user, item) pair of the split (no masking, no cutoff)"
        masking = "none (every test pair is predicted)"
    else:
        ns = c.get("negative_sampling")
        candidates = (f"sampled candidates: {_describe(ns)}" if ns else
                      f"full ranking of every item of the catalogue ({catalogue})")
        masking = ("each user's training items are never recommended; validation items are "
                   + ("masked at test" if ev.get("mask_validation_in_test", True) else "not masked at test"))
    tests = [TEST_MARKS[t][1] for t in TEST_MARKS if ev.get(t)]
    rows = [["data", f"strategy {dc.get('strategy', '?')}: " + ", ".join(f"{k} {v}" for k, v in files.items())],
            ["splitting", "; ".join(f"{k.replace('_splitting', '')}: {_describe(sp.get(k))}"
                                     for k in ("test_splitting", "validation_splitting") if sp.get(k))
             or "given by the files"],
            ["prefiltering", _describe(c.get("prefiltering"))],
            ["binarize", str(bool(c.get("binarize")))],
            ["item catalogue", catalogue],
            ["candidates ranked", candidates],
            ["masking", masking],
            ["relevance threshold", str(ev.get("relevance_threshold", r.threshold))],
            ["cutoffs", ", ".join(map(str, r.cutoffs))],
            ["top_k (list length)", str(c.get("top_k"))],
            ["metrics", ", ".join(r.metrics)],
            ["complex metrics", _describe(ev.get("complex_metrics"))],
            ["significance tests", ", ".join(tests) + " (two-sided, per-user values)" if tests else "none"],
            ["attacks", _describe(ev.get("attacks"))],
            ["random seed", str(c.get("random_seed"))]]
    out = [kv_table(rows)]
    model_rows = []
    for model in r.models:
        spec = (c.get("models") or {}).get(model) or {}
        meta, search = spec.get("meta") or {}, spec.get("search") or {}
        metric, k = r.selection_metric(model)
        chosen = r.selected().get(model, {})
        model_rows.append([model, f"{at(metric, k)} ({'higher' if higher_is_better(metric) else 'lower'} is better)",
                           meta.get("validation_rate", ""), _describe(meta.get("early_stopping")),
                           search.get("algorithm", ""),
                           len(r.trials.get(model, [])) or search.get("configurations", ""),
                           chosen.get("selected_on", "")])
    out.append("<h3>Model selection</h3>" + table(
        ["model", "selected on (validation)", "validated every N epochs", "early stopping", "search", "trials",
         "epoch kept by"], model_rows))
    return "".join(out)


def results_section(r: Results, plots: List[Plot]) -> str:
    out = []
    bars = {p.path.name: p for p in plots if p.kind == "selected"}
    rating = set(r.metrics) <= set(RATING_ERRORS)
    for k in r.cutoffs[:1] if rating else r.cutoffs:  # rating errors are the same at every cutoff
        out.append("<h3>Every test pair</h3>" if rating else f"<h3>Cutoff {k}</h3>")
        if r.best:
            rows = [[short_model(b.get("model", "")) or b["recommender"], b["recommender"],
                     r.tables[k].row(b["recommender"]) or {}, b.get("best_epoch", "")] for b in r.best]
            best_of = {}
            for m in r.metrics:
                vals = [row[2].get(m, float("nan")) for row in rows if math.isfinite(row[2].get(m, float("nan")))]
                if vals and len(rows) > 1:
                    best_of[m] = (max if higher_is_better(m) else min)(vals)
            body = []
            for model, name, values, epoch in rows:
                cells = []
                for m in r.metrics:
                    v = values.get(m, float("nan"))
                    c = Cell(metric_text(m, v) if math.isfinite(v) else "&ndash;", "num")
                    cells.append(Cell(f'<b class="best">{c}</b>', "num") if values.get(m) == best_of.get(m) else c)
                body.append([model, Cell(esc(name), "name"), *cells, epoch])
            out.append("<p>Test metrics of each model's configuration selected on validation (best in bold).</p>")
            out.append(table(["model", "configuration", *r.metrics, "best epoch"], body))
        else:
            out.append("<p>No <code>bestmodelparams</code> file for this run (it did not finish): every "
                       "configuration below.</p>")
        if f"selected_cutoff_{k}.png" in bars:
            out.append(image(bars[f"selected_cutoff_{k}.png"]))
        t = r.tables[k]
        rows = [[Cell(esc(cells[0]), "name")] + [Cell(metric_text(m, number(x)) if math.isfinite(number(x))
                                                      else "&ndash;", "num") for m, x in zip(t.header[1:], cells[1:])]
                for cells in t.rows]
        out.append(details(f"All {len(t.rows)} configurations{'' if rating else f' at cutoff {k}'} ({t.path.name})",
                           table(t.header, rows), opened=not r.best))
    return "".join(out)


def significance_section(r: Results) -> str:
    if not r.stats:
        return ""
    owner = {b["recommender"]: short_model(b.get("model", b["recommender"])) for b in r.best}
    out = ["<h2 id='significance'>Significance tests</h2><p>p-values of the two-sided paired tests on the per-user "
           "test metrics of the selected configurations; bold: p &lt; 0.05.</p>"]
    for test, by_cutoff in r.stats.items():
        for k, pvalues in sorted(by_cutoff.items()):
            pairs = list(dict.fromkeys((a, b) for a, b, _ in pvalues))
            metrics = list(dict.fromkeys(m for _, _, m in pvalues))
            rows = []
            for a, b in pairs:
                cells = []
                for m in metrics:
                    p = pvalues.get((a, b, m), math.nan)
                    c = Cell("&ndash;", "num") if not math.isfinite(p) else Cell(f"{p:.2g}", "num")
                    cells.append(Cell(f"<b>{c}</b>", "num") if p < 0.05 else c)
                rows.append([owner.get(a, a), owner.get(b, b), *cells])
            out.append(f"<h3>{esc(TEST_MARKS[test][1])}, cutoff {k}</h3>"
                       + table(["model A", "model B", *metrics], rows))
    return "".join(out)


def selected_section(r: Results) -> str:
    if not r.best:
        return "<p>No selected configurations (the run did not finish).</p>"
    out = []
    for b in r.best:
        model = b.get("model", b["recommender"])
        metric, k = r.selection_metric(model)
        trial = r.trial(b["recommender"])
        varying = varied_params(r.trials.get(model, []))
        value = validation_value(trial, metric, k) if trial else math.nan
        where = (f"validation {at(metric, k)} {value:.4f} at epoch {b.get('best_epoch')}" if math.isfinite(value)
                 else f"kept epoch {b.get('best_epoch')} ({b.get('selected_on', '')})")
        params = b.get("configuration") or {}
        rows = [[k2, Cell(f"<b>{esc(value_text(v))}</b>" if k2 in varying else esc(value_text(v)),
                          "num" if isinstance(v, (int, float)) and not isinstance(v, bool) else "")]
                for k2, v in params.items()]
        out.append(f"<h3>{esc(model)}</h3><p><code>{esc(b['recommender'])}</code><br>{esc(where)}"
                   + (f"; searched: {esc(', '.join(varying))} (bold)" if varying else "") + "</p>"
                   + (table(["parameter", "value"], rows) if rows else "<p>No hyperparameters.</p>"))
    return "".join(out)


def robustness_section(r: Results, plots: List[Plot]) -> str:
    chosen = {b["recommender"]: short_model(b.get("model", b["recommender"])) for b in r.best}
    rows = [a for a in r.attacks if a["model"] in chosen and not a["skipped"] and a["cutoff"] is not None]
    certified = [a for a in r.attacks if a["model"] in chosen and not a["skipped"] and a["cutoff"] is None]
    skipped = list(dict.fromkeys((chosen[a["model"]], a["attack"], a["skipped"]) for a in r.attacks
                                 if a["model"] in chosen and a["skipped"]))
    images = [p for p in plots if p.kind == "attack"]
    if not (rows or certified or skipped):
        return ""
    out = ["<h2 id='robustness'>Robustness</h2>"]
    out += [image(p) for p in images]
    if rows:
        metrics = list(dict.fromkeys(a["metric"] for a in rows))
        pivot: dict = {}
        for a in rows:
            key = (chosen[a["model"]], a["method"], a["modality"], a["budget"], a["cutoff"])
            pivot.setdefault(key, {})[a["metric"]] = a
        body = []
        for key, by_metric in pivot.items():
            cells = list(key)
            for m in metrics:
                a = by_metric.get(m)
                drop = 100 * a["drop"] if a is not None and math.isfinite(a["drop"]) else math.nan
                shown = f"{0.0 if abs(drop) < 0.05 else drop:.1f}%" if math.isfinite(drop) else "&ndash;"
                cells += [a["clean"] if a else math.nan, a["attacked"] if a else math.nan, Cell(shown, "num")]
            body.append(cells)
        listing = table(["model", "attack", "modalities", "budget", "cutoff"]
                        + [f"{m} {c}" for m in metrics for c in ("clean", "attacked", "drop")], body)
        out.append("<p>Test metrics of the selected configurations, clean and under attack; drop = (clean &minus; "
                   "attacked) / clean.</p>")
        out.append(listing if len(body) <= 24 else details(f"Clean vs attacked test metrics ({len(body)} rows)",
                                                            listing))
    if certified:
        out.append("<h3>Certified radius</h3>" + table(["model", "statistic", "value"],
                                                       [[chosen[a["model"]], a["metric"], a["attacked"]]
                                                        for a in certified]))
    if skipped:
        out.append(table(["model", "attack", "skipped because"], [list(s) for s in skipped]))
    return "".join(out)


def training_section(r: Results, plots: List[Plot]) -> str:
    curves = [p for p in plots if p.kind == "training"]
    searches = [p for p in plots if p.kind == "search"]
    out = []
    if curves:
        out.append("<h2 id='training'>Training curves</h2><p>Training loss and validation selection metric per "
                   "epoch; the dashed line and star mark the epoch whose weights were kept.</p>")
        out.append("<div class='grid'>" + "".join(image(p) for p in curves if p.selected) + "</div>")
        others = [p for p in curves if not p.selected]
        if others:
            what = "configuration that was" if len(others) == 1 else "configurations that were"
            out.append(details(f"The {len(others)} {what} not selected",
                               "<div class='grid'>" + "".join(image(p) for p in others) + "</div>"))
    if searches:
        out.append("<h2 id='search'>Hyperparameter searches</h2><p>Validation metric of every trial against each "
                   "hyperparameter its search varied; the star is the selected configuration.</p>")
        out += [image(p) for p in searches]
    return "".join(out)


def rating_section(r: Results, plots: List[Plot]) -> str:
    from elliot.results.plots_eval import is_rating_run, test_ratings_path

    if not is_rating_run(r):
        return ""
    images = [image(p) for p in plots if p.kind == "rating"]
    if images:
        return "<h2 id='rating'>Rating predictions</h2>" + "".join(images)
    why = ("the test ratings are not on disk (data_config.test_path, or splitting.save_on_disk)"
           if test_ratings_path(r) is None else "no saved predictions (meta.save_recs: true writes them)")
    return f"<h2 id='rating'>Rating predictions</h2><p>No predicted-vs-true plot: {esc(why)}.</p>"


def render(r: Results, plots: List[Plot]) -> str:
    name = (r.data_summary or {}).get("dataset") or r.config.get("dataset") or r.root.name
    when = r.timestamp.replace("_", "-", 2).replace("_", " ", 1).replace("_", ":")
    sections = [("data", "Data", data_section(r)), ("protocol", "Protocol", protocol_section(r)),
                ("results", "Test results", results_section(r, plots))]
    body = "".join(f"<h2 id='{sid}'>{title}</h2>{content}" for sid, title, content in sections)
    body += significance_section(r)
    body += "<h2 id='selected'>Selected configurations</h2>" + selected_section(r)
    body += training_section(r, plots) + robustness_section(r, plots) + rating_section(r, plots)
    links = [("data", "Data"), ("protocol", "Protocol"), ("results", "Results"), ("significance", "Significance"),
             ("selected", "Selected"), ("training", "Training"), ("search", "Search"), ("robustness", "Robustness"),
             ("rating", "Ratings")]
    nav = "".join(f"<a href='#{sid}'>{t}</a>" for sid, t in links if f"id='{sid}'" in body)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{esc(name)}: experiment report</title><style>{CSS}</style></head><body>"
            f"<h1>Experiment report: {esc(name)}</h1><p class='sub'>run of {esc(when)}; every number and plot is read "
            f"from the results folder <code>{esc(r.root)}</code></p><nav>{nav}</nav>{body}</body></html>\n")


def write_report(results: Results, plots: List[Plot]) -> Path:
    path = results.root / "report.html"
    tmp = path.with_name(".report.html.tmp")
    tmp.write_text(render(results, plots), encoding="utf-8")
    tmp.replace(path)
    return path


def write_plots_and_report(folder, timestamp: Optional[str] = None, performance=None) -> List[Path]:
    """Plots under ``<folder>/plots/`` and ``<folder>/report.html`` for the run ``timestamp`` (default: the
    newest) of the results folder (tables in ``performance``, default ``<folder>/performance``); returns the
    paths written."""
    results = load_results(folder, timestamp, performance)
    plots = write_plots(results)
    return [p.path for p in plots] + [write_report(results, plots)]
