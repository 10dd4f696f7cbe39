"""`small report`: a self-contained page about a build, checked in a real browser (headless Chromium)."""

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.image import load_image

from test_compile import random_input, random_network

FIXTURES = Path(__file__).parent / "fixtures"
SECTIONS = ("Network", "Tile map", "Conductances", "Routing and traffic", "Spike rasters", "Accuracy", "FPGA",
            "Energy estimate", "Verification")


def run(*args):
    return subprocess.run([sys.executable, "-m", "small", *map(str, args)], capture_output=True, text=True)


def write_model(folder: Path) -> Path:
    """Every neuron model, recurrence, delays and an LI readout, with a labelled test set (the reference's labels)."""
    from compiler.netfile import load_network, save_network
    from sim.evaluate import classify
    from sim.reference import ReferenceSimulator

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "net.small"
    save_network(random_network(0), model)
    x = random_input(0, steps=30, batch=24).astype(np.float32)
    y = ReferenceSimulator(load_network(model)).run(x).output_array()
    np.savez(folder / "test_set.npz", x=x, labels=classify(y, "spike_count"))
    return model


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """`small flow` on 16x16 tiles (several tiles, split fan-in), verified under Icarus, with a recorded FPGA report."""
    root = tmp_path_factory.mktemp("report")
    model = write_model(root / "model")
    out = root / "build"
    r = run("flow", model, "--tile", "16x16", "--board", "none", "--simulator", "icarus", "--samples", "2", "-o", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[6/6] report" in r.stdout and "verified   PASS" in r.stdout
    shutil.copy(FIXTURES / "icebreaker_fpga.json", out / "hdl" / "small_chip_fpga.json")
    r = run("report", out, "--screenshot", root / "shot.png")
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for tool in ("chromium", "chromedriver"):
        assert shutil.which(tool), f"{tool} is missing: `make install` installs Debian's chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def test_the_report_opens_in_headless_chromium_with_every_figure_loaded(build, browser, tmp_path):
    page = build / "report.html"
    browser.get(page.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
    pngs = sorted((build / "report").glob("*.png"))
    tiles = load_image(build).n_tiles
    assert tiles >= 4  # split fan-in over several tiles
    assert len(images) == len(pngs) == 7 + tiles  # network, tiles, traffic, raster, accuracy, fpga, energy; a tile each
    broken = [alt for alt, complete, w, h in images if not (complete and w > 100 and h > 100)]
    assert not broken, f"figures that did not load: {broken}"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    # self-contained: the page fetched nothing (figures are data: URIs, the style sheet inline)
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    headings = browser.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    assert headings == list(SECTIONS)
    # the full page as the browser draws it: tall, and not blank
    height = browser.execute_script("return document.body.scrollHeight")
    assert height > 5000
    browser.set_window_size(1400, min(height, 16000))
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot))
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 5000 and pixels[..., :3].std() > 0.1


def test_the_figures_beside_the_report_are_the_embedded_ones(build):
    page = (build / "report.html").read_text()
    embedded = [base64.b64decode(d) for d in re.findall(r"src='data:image/png;base64,([^']+)'", page)]
    files = {p.name: p.read_bytes() for p in (build / "report").glob("*.png")}
    assert sorted(embedded) == sorted(files.values())
    tiles = load_image(build).n_tiles
    for name in ("network", "tiles", "traffic", "raster", "accuracy", "energy", "fpga", *(f"tile{t}" for t in range(tiles))):
        assert f"{name}.png" in files, name
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)  # nothing from the network


def test_the_report_states_the_builds_figures(build):
    page = (build / "report.html").read_text()
    report = json.loads((build / "report.json").read_text())
    fpga = json.loads((FIXTURES / "icebreaker_fpga.json").read_text())
    assert f"{report['accuracy']['reference'] * 100:.2f} %" in page
    assert f"{report['accuracy']['digital'] * 100:.2f} %" in page
    assert "memristive (PCM, read after 1 h)" in page
    assert f"{fpga['fmax_mhz']['clk']:.1f} MHz" in page and f"{fpga['resources']['logic_cells']['used']:,}" in page
    assert "<span class='pass'>PASS</span>" in page and "stale" not in page
    assert re.search(r"per inference</td><td>[0-9,.]+ pJ", page)
    assert (build.parent / "shot.png").stat().st_size > 10_000  # --screenshot


def test_verification_status_follows_the_recorded_runs(build, tmp_path):
    from small.report import _verification, load_build

    copy = tmp_path / "b"
    shutil.copytree(build, copy)
    result = next(copy.glob("verify/icarus/*/result.json"))
    doc = json.loads(result.read_text())
    assert _verification(load_build(copy))[0] == "PASS"
    result.write_text(json.dumps({**doc, "passed": False, "mismatch": "sample 0, chip step 3: spike at tile 1 column 5"}))
    status, rows, _ = _verification(load_build(copy))
    assert status == "FAIL" and "chip step 3" in rows[0][-1]
    result.write_text(json.dumps({**doc, "image_sha256": "0" * 64}))  # a run of an older image
    assert _verification(load_build(copy))[0] == "stale"
    shutil.rmtree(copy / "verify")
    assert _verification(load_build(copy))[0] == "not verified"


def test_traffic_counts_every_routing_and_input_map_entry(build):
    from compiler.image import load_image
    from small.report import traffic

    image = load_image(build)
    a = image.arrays
    n_in = a["input_ptr"].size - 1
    entries, events = traffic(image, np.ones(image.neuron_addresses().size), np.ones(n_in), 1)
    assert entries.sum() == a["route_ptr"][-1] + a["input_ptr"][-1]
    np.testing.assert_array_equal(entries[0], np.bincount(a["input_tile"], minlength=image.n_tiles))
    np.testing.assert_array_equal(entries[1:].sum(axis=0), np.bincount(a["route_tile"], minlength=image.n_tiles))
    np.testing.assert_array_equal(events, entries)  # one spike and one input event each: one event per entry


@pytest.mark.slow
def test_a_memristive_build_with_stuck_devices(tmp_path):
    model = write_model(tmp_path / "model")
    assert run("faults", "random", "--rate", "0.05", "--tiles", "10", "--tile", "16x16", "-o", tmp_path / "f.json").returncode == 0
    r = run("compile", model, "--target", "memristive", "--tile", "16x16", "--faults", tmp_path / "f.json", "-o", tmp_path / "m")
    assert r.returncode == 0, r.stderr
    r = run("report", tmp_path / "m")
    assert r.returncode == 0, r.stdout + r.stderr
    page = (tmp_path / "m" / "report.html").read_text()
    stuck = json.loads((tmp_path / "m" / "report.json").read_text())["faults"]["used_cells_with_stuck_device"]
    assert stuck > 0 and f"{stuck} used cells have a stuck device" in page
    assert "no FPGA design" in page and "not verified" in page
    assert "memristive_ideal" not in page and "memristive, ideal devices" in page


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    r = run("report", tmp_path)
    assert r.returncode == 2 and "is not a build folder" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    model = write_model(tmp_path / "model")
    assert run("compile", model, "--tile", "16x16", "-o", tmp_path / "b").returncode == 0
    (tmp_path / "b" / "network.small").unlink()  # as an older SMALL wrote builds
    r = run("report", tmp_path / "b")
    assert r.returncode == 2 and "compile it again" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b" / "report.html").exists() and not (tmp_path / "b" / "report").exists()
    r = run("report", tmp_path / "b", "--screenshot-size", "12")
    assert r.returncode == 2 and "WIDTHxHEIGHT" in r.stderr


def test_a_network_the_other_target_cannot_hold_still_gets_its_report(build, monkeypatch):
    """The comparison target is optional: its compile error is shown, the build's own figures stay."""
    import small.report as report
    from small.errors import UnsupportedError

    def refuse(image, net):
        raise UnsupportedError("threshold 1e9 does not fit the memristive range")

    monkeypatch.setattr(report, "_counterpart", refuse)
    b = report.load_build(build)
    assert b.memristive is None and "1e9" in b.other_error
    sections, head = report.build_sections(b)
    assert list(head["accuracy"]) == ["reference (float)", "digital twin"]
    text = {s.title: s.body for s in sections}
    assert "No memristive counterpart" in text["Energy estimate"] and "1e9" in text["Spike rasters"]
    assert len(next(s for s in sections if s.title == "Spike rasters").figures) == 1
