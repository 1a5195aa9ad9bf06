"""Take the README's MLflow UI screenshots of the default sweep, in headless Chromium.

    python docs/screenshots.py                    runs `make sweep`'s spec into a fresh
                                                  store, then takes them
    python docs/screenshots.py --store DIR --sweep NAME   an existing sweep

docs/ui_runs.png    the runs table: the sweep's parent run, its trials nested under it,
                    val_acc, param_count and train.lr as columns
docs/ui_curves.png  the chart view: the trials' val_acc per epoch (the mean of their
                    restarts), one line per trial
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import (  # noqa: E402
    chromium,
    free_port,
    show_sweep_in_runs_table,
    start_server,
    stop_server,
)


def runs_table(driver: Any, sweep: str) -> None:
    """The parent run expanded, with val_acc, param_count and train.lr as columns."""
    show_sweep_in_runs_table(driver, sweep)
    time.sleep(2)


def chart_view(driver: Any) -> None:
    """The runs page's chart view, filtered to the val_acc charts."""
    from selenium.webdriver.common.by import By

    chart = "//input[@name='runs-view-mode'][@value='CHART']/ancestor::label[1]"
    driver.find_element(By.XPATH, chart).click()
    time.sleep(3)
    search = driver.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']")
    search.send_keys("val_acc")  # the objective's curve (and its spread) per trial
    time.sleep(6)  # the charts load each run's history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="an existing store [default: a new sweep]")
    parser.add_argument("--sweep", default="mlp-digits")
    parser.add_argument("--experiment", default="mlp-digits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "store"
            spec = ROOT / "experiments" / "mlp_digits.yaml"
            command = [sys.executable, "-m", "sweeplab", "sweep", str(spec), "--quiet"]
            subprocess.run([*command, "--store", str(store)], check=True)
        from mlflow import MlflowClient

        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            raise SystemExit(f"no experiment {args.experiment} in {store}")
        port = free_port()
        ui = [sys.executable, "-m", "sweeplab", "ui", "--store", str(store), "--port", str(port)]
        proc = start_server(ui, f"http://127.0.0.1:{port}/health", seconds=120)
        driver = chromium(Path(tmp) / "profile", window="1800,900")
        try:
            driver.get(
                f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
                "?workflowType=machine_learning"
            )
            runs_table(driver, args.sweep)
            driver.save_screenshot(str(ROOT / "docs" / "ui_runs.png"))
            chart_view(driver)
            driver.save_screenshot(str(ROOT / "docs" / "ui_curves.png"))
        except Exception:
            driver.save_screenshot(str(Path(tempfile.gettempdir()) / "screenshot-failed.png"))
            raise
        finally:
            driver.quit()
            stop_server(proc)
    print("docs/ui_runs.png, docs/ui_curves.png")


if __name__ == "__main__":
    main()
