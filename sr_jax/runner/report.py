"""The HTML report of a batch run: `index.html` in the output folder.

`build` is a pure function from journal records to one static HTML page:
a card per explained image (thumbnail of the panel, predicted class with its
probability, SSIM ratio, timings, links to the panel PNG and the `.npz`), the
failures with their reasons, and sorting (class, probability, SSIM ratio,
name) and filtering by class done by a small inline script. The page needs no
server and no network; open it from the folder (file://). Every text is HTML-
escaped and every link percent-encoded, so a file called `<b>&"x".png`
shows as itself.

`write` puts it into place atomically, so a reader (or a run killed while it
writes) never sees half a page; the runner rewrites it as the run goes.
"""

from __future__ import annotations

import html
import json
import math
import urllib.parse
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from sr_jax import files

INDEX = "index.html"

# Stages shown in a card's timing table, in pipeline order; others follow.
_STAGES = ("load", "preprocess", "lrp", "saliency_relevance", "saliency_image",
           "edges", "panel", "write", "ssim")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#222}
header{background:#fff;padding:12px 20px;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:1}
h1{font-size:18px;margin:0 0 4px}
.meta{color:#555;margin:0}
.controls{margin-top:8px;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
main{padding:16px 20px}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;overflow:hidden}
.card[hidden]{display:none}
.card img{width:100%;height:auto;display:block;background:#eee}
.card h2{font-size:13px;margin:6px 0 2px;overflow-wrap:anywhere}
.card p{margin:2px 0}
.cls{font-weight:600}
.links a{margin-right:10px}
details table{border-collapse:collapse;font-size:12px}
details td{padding:0 8px 0 0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
#failures table{border-collapse:collapse;background:#fff}
#failures th,#failures td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
.none{color:#777}
"""

# Sorting and filtering, client side. Cards carry data-file, data-class,
# data-prob and data-ssim (empty when unknown: last in either direction).
_SCRIPT = """
(function () {
  var grid = document.getElementById('cards');
  var cards = Array.prototype.slice.call(grid.querySelectorAll('.card'));
  var sortBy = document.getElementById('sort');
  var only = document.getElementById('filter');
  var shown = document.getElementById('shown');
  function num(card, key) {
    var v = card.dataset[key];
    return v === '' ? null : parseFloat(v);
  }
  function byFile(a, b) {
    return a.dataset.file < b.dataset.file ? -1 : a.dataset.file > b.dataset.file ? 1 : 0;
  }
  function byNumber(key, sign) {
    return function (a, b) {
      var x = num(a, key), y = num(b, key);
      if (x === null || y === null) {
        return (x === null) - (y === null) || byFile(a, b);
      }
      return sign * (x - y) || byFile(a, b);
    };
  }
  var orders = {
    'file': byFile,
    'class': function (a, b) {
      return a.dataset.class.localeCompare(b.dataset.class) || byFile(a, b);
    },
    'prob-desc': byNumber('prob', -1), 'prob-asc': byNumber('prob', 1),
    'ssim-desc': byNumber('ssim', -1), 'ssim-asc': byNumber('ssim', 1)
  };
  function apply() {
    var cls = only.value, count = 0;
    cards.slice().sort(orders[sortBy.value]).forEach(function (card) {
      card.hidden = cls !== '' && card.dataset.class !== cls;
      count += card.hidden ? 0 : 1;
      grid.appendChild(card);
    });
    shown.textContent = count + ' of ' + cards.length + ' shown';
  }
  sortBy.addEventListener('change', apply);
  only.addEventListener('change', apply);
  apply();
})();
"""


def _number(value: Any) -> str:
  """A data attribute's number ("" when unknown or not finite)."""
  if value is None or not math.isfinite(float(value)):
    return ""
  return repr(float(value))


def _e(value: Any) -> str:
  return html.escape(str(value), quote=True)


def _href(name: str) -> str:
  return _e(urllib.parse.quote(name, safe="/"))


def class_label(prediction: Mapping[str, Any]) -> str:
  """The class a card shows: its name, or "class <index>" without names."""
  name = prediction.get("name")
  return str(name) if name is not None else f"class {prediction.get('index')}"


def _ratio(rec: Mapping[str, Any]) -> Optional[float]:
  ssim = rec.get("ssim") or {}
  return ssim.get("ratio")


def _timings(timings: Mapping[str, float]) -> str:
  order = [k for k in _STAGES if k in timings]
  order += sorted(k for k in timings if k not in _STAGES and k != "total")
  rows = "".join(f"<tr><td>{_e(k)}</td><td class=num>{timings[k]:.3f} s</td></tr>"
                 for k in order)
  total = timings.get("total")
  head = "timings" if total is None else f"total {total:.3f} s"
  return f"<details><summary>{_e(head)}</summary><table>{rows}</table></details>"


def _card(rec: Mapping[str, Any]) -> str:
  name = rec["file"]
  pred = rec.get("prediction") or {}
  label, prob, ratio = class_label(pred), pred.get("probability"), _ratio(rec)
  png, npz = f"{name}.png", f"{name}.npz"
  thumb = rec.get("thumbnail") or png
  prob_text = "n/a" if prob is None else f"{100 * prob:.1f}%"
  ratio_text = "n/a" if ratio is None else f"{ratio:.3f}"
  return (
      f'<article class="card" data-file="{_e(name)}" data-class="{_e(label)}" '
      f'data-prob="{_number(prob)}" data-ssim="{_number(ratio)}">'
      f'<a href="{_href(png)}"><img src="{_href(thumb)}" loading="lazy" '
      f'alt="panel of {_e(name)}"></a>'
      f'<h2>{_e(name)}</h2>'
      f'<p><span class="cls">{_e(label)}</span> '
      f'<span class="prob">{_e(prob_text)}</span> &middot; SSIM ratio '
      f'<span class="ssim">{_e(ratio_text)}</span></p>'
      f'{_timings(rec.get("timings") or {})}'
      f'<p class="links"><a href="{_href(png)}">panel PNG</a>'
      f'<a href="{_href(npz)}">maps .npz</a></p></article>')


def _failures(failed: Sequence[Mapping[str, Any]]) -> str:
  if not failed:
    return '<p class="none">No failures.</p>'
  rows = "".join(
      f"<tr><td>{_e(r['file'])}</td><td>{_e(r.get('stage', ''))}</td>"
      f"<td>{_e(r.get('reason', ''))}</td></tr>" for r in failed)
  return ("<table><thead><tr><th>file</th><th>stage</th><th>reason</th>"
          f"</tr></thead><tbody>{rows}</tbody></table>")


def build(records: Sequence[Mapping[str, Any]], *,
          title: str = "SR maps",
          status: str = "",
          config: Optional[Mapping[str, Any]] = None) -> str:
  """The report page of `records` (journal records, in the order shown).

  Args:
    records: "ok" records become cards, "failed" ones rows of the failures
      table (see `sr_jax.runner.run` for their fields).
    title: the page's title.
    status: a line under the title, e.g. "finished: 40 of 40 images".
    config: the run's configuration (model, composite, ...), shown as text.

  Returns:
    The HTML text of one self-contained page.

  Examples:
    >>> page = build([{"file": "a<1>.png", "status": "ok",
    ...                "prediction": {"index": 3, "name": None,
    ...                               "probability": 0.5}}])
    >>> 'data-file="a&lt;1&gt;.png"' in page and 'href="a%3C1%3E.png.png"' in page
    True
  """
  ok = [r for r in records if r.get("status") == "ok"]
  failed = [r for r in records if r.get("status") != "ok"]
  labels = sorted({class_label(r.get("prediction") or {}) for r in ok})
  options = "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in labels)
  settings = ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}"
                       for k, v in (config or {}).items())
  cards = "".join(_card(r) for r in ok) or '<p class="none">No images yet.</p>'
  return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{_e(title)}</h1>
<p class="meta" id="status">{_e(status)}</p>
<p class="meta">{len(ok)} explained, {len(failed)} failed. {_e(settings)}</p>
<div class="controls">
<label>Sort by <select id="sort">
<option value="file">file name</option>
<option value="class">class</option>
<option value="prob-desc">probability, highest first</option>
<option value="prob-asc">probability, lowest first</option>
<option value="ssim-desc">SSIM ratio, highest first</option>
<option value="ssim-asc">SSIM ratio, lowest first</option>
</select></label>
<label>Class <select id="filter"><option value="">all classes</option>{options}</select></label>
<span id="shown"></span></div></header>
<main><section id="cards">{cards}</section>
<section id="failures"><h2>Failures ({len(failed)})</h2>{_failures(failed)}</section>
</main><script>{_SCRIPT}</script></body></html>
"""


def write(out: Path, records: Sequence[Mapping[str, Any]], **options) -> Path:
  """Writes `build(records, **options)` to `<out>/index.html`, atomically.

  Returns:
    The page's path.
  """
  path = Path(out) / INDEX
  files.atomic_write(path, build(records, **options).encode("utf-8"))
  return path
