"""The HTML report (`sr_jax.runner.report`): built, escaped, rewritten as a
run goes, and used in a real headless browser (Debian's chromium driven by
selenium): cards, thumbnails, links, sorting, filtering and failures.

The browser tests take about 5 s (chromium starts once for the module).
"""

import io as pyio
import json
import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_jax import files, runner
from sr_jax.runner import report
from tests.test_batch import Killed, fake_explain, write_bad_files, write_images

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed "
    "(apt-get install -y chromium chromium-driver; .ci/run installs them).")

# A name with every character that HTML or a URL treats specially.
ODD = 'odd <b>&"q\'# 100%?.png'


def card_count(page: str) -> int:
  return page.count('<article class="card"')


def records_with_files(out: Path) -> list[dict]:
  """Hand-made records (classes, probabilities, SSIM ratios, a missing ratio,
  an old record without thumbnail, an odd name, a subfolder, failures) and
  the files they point to."""
  specs = [  # name, class name, probability, ratio, thumbnail?
      ("b.png", "cat", 0.91, 1.50, True),
      ("a.png", "dog", 0.40, 0.70, True),
      ("sub/c.png", "cat", 0.65, None, True),
      (ODD, "bird", 0.99, 2.25, True),
      ("old.png", "dog", 0.10, 1.10, False),  # From before thumbnails.
  ]
  recs = []
  for i, (name, cls, prob, ratio, thumb) in enumerate(specs):
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    colour = np.full((30, 60, 3), 40 * i, np.uint8)
    files.save_png(out / f"{name}.png", colour)
    files.atomic_write(out / f"{name}.npz", b"npz")
    rec = {"file": name, "status": "ok",
           "prediction": {"index": i, "name": cls, "probability": prob},
           "ssim": None if ratio is None else {"ssim_lrp": 0.5,
                                               "ssim_sr": 0.5 * ratio,
                                               "ratio": ratio},
           "timings": {"load": 0.01, "lrp": 0.2, "total": 0.5 + i}}
    if thumb:
      Image.fromarray(colour[:15, :30]).save(out / f"{name}.thumb.jpg")
      rec["thumbnail"] = f"{name}.thumb.jpg"
    recs.append(rec)
  recs.append({"file": "broken.jpg", "status": "failed", "stage": "load",
               "reason": "ImageLoadError: <not> an image & empty"})
  return recs


def test_build_escapes_text_and_links(tmp_path):
  recs = records_with_files(tmp_path)
  page = report.build(recs, title="t <i>", status="s & <u>",
                      config={"model": "<m>"})
  assert page.count("<script>") == 1  # Only the page's own script.
  for raw in ("<b>", "<i>", "<u>", "<m>", "<not>"):
    assert raw not in page
  assert "odd &lt;b&gt;&amp;&quot;q&#x27;# 100%?.png" in page
  quoted = urllib.parse.quote(ODD + ".png")
  assert f'href="{quoted}"' in page and "%23" in quoted and "%25" in quoted
  assert "ImageLoadError: &lt;not&gt; an image &amp; empty" in page
  assert card_count(page) == 5
  # The old record falls back to its PNG; the others show their thumbnails.
  assert 'src="old.png.png"' in page and 'src="a.png.thumb.jpg"' in page
  assert card_count(report.build([], status="x")) == 0


def test_page_is_rewritten_as_the_run_goes(tmp_path):
  inp, out = tmp_path / "in", tmp_path / "out"
  write_images(inp, [16] * 5)
  seen = []

  def explain(crops, timings):
    page = (out / "index.html").read_text(encoding="utf-8")
    seen.append(card_count(page))  # The page as it stands before this batch.
    if len(seen) == 3:
      raise Killed
    return fake_explain(crops, timings)

  with pytest.raises(Killed):
    runner.run(str(inp), str(out), model="vgg_tiny", batch_size=2,
               num_devices=1, explain_fn=explain, report_interval=0,
               stream=pyio.StringIO())
  assert seen == [0, 2, 4]
  page = (out / "index.html").read_text(encoding="utf-8")
  assert page.endswith("</html>\n") and card_count(page) == 4
  assert "running: 4 of 5 images recorded" in page
  summary = runner.run(str(inp), str(out), model="vgg_tiny", batch_size=2,
                       num_devices=1, explain_fn=fake_explain,
                       stream=pyio.StringIO())
  page = (out / "index.html").read_text(encoding="utf-8")
  assert card_count(page) == 5 and f"finished: {summary}" in page
  run_json = json.loads((out / "run.json").read_text(encoding="utf-8"))
  assert run_json["summary"]["done"] == 5 and run_json["model"] == "vgg_tiny"
  runner.run(str(inp), tmp_path / "quiet", model="vgg_tiny", num_devices=1,
             explain_fn=fake_explain, report_interval=None,
             stream=pyio.StringIO())
  assert not (tmp_path / "quiet" / "index.html").exists()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  if CHROMIUM is None or DRIVER is None:
    pytest.skip(needs_chromium.kwargs["reason"])
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  profile = tmp_path_factory.mktemp("chromium_profile")
  for arg in ("--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
              "--window-size=1280,1000"):
    options.add_argument(arg)
  driver = webdriver.Chrome(service=Service(executable_path=DRIVER),
                            options=options)
  yield driver
  driver.quit()


def loaded_width(driver, img) -> int:
  """The natural width of `img` once the browser has loaded it (lazily)."""
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel
  driver.execute_script("arguments[0].scrollIntoView()", img)
  WebDriverWait(driver, 10).until(
      lambda d: d.execute_script("return arguments[0].complete", img))
  return driver.execute_script("return arguments[0].naturalWidth", img)


def shown(driver) -> list[str]:
  """The file names of the cards the browser shows, top to bottom."""
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  return [card.find_element(By.TAG_NAME, "h2").text
          for card in driver.find_elements(By.CSS_SELECTOR, ".card")
          if card.is_displayed()]


def choose(driver, select_id: str, value: str) -> None:
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.support.ui import Select  # pylint: disable=import-outside-toplevel
  Select(driver.find_element(By.ID, select_id)).select_by_value(value)


@needs_chromium
def test_cards_sort_and_filter_in_a_browser(browser, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  out.mkdir()
  recs = records_with_files(out)
  report.write(out, recs, title="test", status="finished")
  browser.get((out / "index.html").as_uri())
  ok = [r for r in recs if r["status"] == "ok"]
  by_file = sorted(r["file"] for r in ok)
  assert shown(browser) == by_file  # The default order: file name.
  assert browser.find_element(By.ID, "shown").text == "5 of 5 shown"
  # Every card's text, its thumbnail (decoded by the browser) and its links.
  for card in browser.find_elements(By.CSS_SELECTOR, ".card"):
    name = card.find_element(By.TAG_NAME, "h2").text
    rec = next(r for r in ok if r["file"] == name)
    pred, ssim = rec["prediction"], rec["ssim"]
    assert card.find_element(By.CLASS_NAME, "cls").text == pred["name"]
    assert card.find_element(By.CLASS_NAME, "prob").text == (
        f"{100 * pred['probability']:.1f}%")
    assert card.find_element(By.CLASS_NAME, "ssim").text == (
        "n/a" if ssim is None else f"{ssim['ratio']:.3f}")
    width = loaded_width(browser, card.find_element(By.TAG_NAME, "img"))
    assert width == (30 if "thumbnail" in rec else 60), name
    links = [a.get_attribute("href")
             for a in card.find_elements(By.CSS_SELECTOR, ".links a")]
    assert links == [(out / f"{name}{ext}").as_uri() for ext in (".png", ".npz")]
  # Sorting: each order computed here from the records.
  key = {r["file"]: r for r in ok}
  prob = lambda f: key[f]["prediction"]["probability"]
  ratio = lambda f: (key[f]["ssim"] or {}).get("ratio")
  choose(browser, "sort", "prob-desc")
  assert shown(browser) == sorted(by_file, key=lambda f: -prob(f))
  choose(browser, "sort", "prob-asc")
  assert shown(browser) == sorted(by_file, key=prob)
  with_ratio = [f for f in by_file if ratio(f) is not None]
  choose(browser, "sort", "ssim-desc")  # Unknown ratios last either way.
  assert shown(browser) == sorted(with_ratio, key=lambda f: -ratio(f)) + ["sub/c.png"]
  choose(browser, "sort", "ssim-asc")
  assert shown(browser) == sorted(with_ratio, key=ratio) + ["sub/c.png"]
  choose(browser, "sort", "class")
  classes = lambda f: (key[f]["prediction"]["name"], f)
  assert shown(browser) == sorted(by_file, key=classes)
  # Filtering keeps the order.
  choose(browser, "filter", "cat")
  assert shown(browser) == ["b.png", "sub/c.png"]
  assert browser.find_element(By.ID, "shown").text == "2 of 5 shown"
  choose(browser, "sort", "prob-asc")
  assert shown(browser) == ["sub/c.png", "b.png"]
  choose(browser, "filter", "")
  assert len(shown(browser)) == 5
  rows = browser.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
  assert [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows] \
      == [["broken.jpg", "load", "ImageLoadError: <not> an image & empty"]]
  browser.execute_script("window.scrollTo(0, 0)")
  shot = tmp_path / "report.png"
  assert browser.save_screenshot(str(shot))
  with Image.open(shot) as im:
    assert im.width >= 1000 and len(np.unique(np.asarray(im.convert("L")))) > 10


@needs_chromium
def test_page_of_a_run_in_a_browser(browser, tmp_path):
  """A real run's page (stand-in model with class names, bad files)."""
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  inp, out = tmp_path / "in", tmp_path / "out"
  good = write_images(inp, [48] * 6)
  bad = write_bad_files(inp)
  runner.run(str(inp), str(out), model="demo_vgg", batch_size=2, num_devices=1,
             explain_fn=fake_explain, stream=pyio.StringIO())
  records = [json.loads(line) for line in
             (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
  browser.get((out / "index.html").as_uri())
  assert shown(browser) == sorted(good)
  widths = [loaded_width(browser, img)
            for img in browser.find_elements(By.CSS_SELECTOR, ".card img")]
  assert widths == [runner.outputs.THUMBNAIL_WIDTH] * len(good)
  classes = {r["prediction"]["name"] for r in records if r["status"] == "ok"}
  options = [o.get_attribute("value") for o in
             browser.find_elements(By.CSS_SELECTOR, "#filter option")]
  assert options == [""] + sorted(classes)
  rows = browser.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
  failures = {r.find_element(By.TAG_NAME, "td").text: r.text for r in rows}
  assert sorted(failures) == sorted(bad)
  for name, reason in bad.items():
    assert reason in failures[name]
  assert re.search(r"finished: done 6, failed 5",
                   browser.find_element(By.ID, "status").text)
