#!/usr/bin/env python
"""Real-browser test of the explorer: JupyterLab + Debian's Chromium driven by Playwright.

Builds a small run (or takes --run), starts JupyterLab on 127.0.0.1 with a token on a free port (ACULA_RUN set
for the kernel), opens a copy of nbs/tutorials/explore.ipynb, runs all cells from the Run menu, and checks the
RetrievalExplorer: spectrogram, audio player and report list render; choosing another clip changes the
retrieved list; a typed sentence brings clips back; in the UMAP view a clicked point opens its clip and a
lasso lists its clips. Screenshots go to <run>/eval/screenshots/. Everything it
starts is stopped, also on failure; a failure prints the step and exits 1.

    python .ci/browser.py [--run RUN] [--timeout 240]
"""
from __future__ import annotations
import argparse, json, os, secrets, shutil, signal, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO/'nbs'/'tutorials'/'explore.ipynb'
CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update', '--disable-sync']
SENTENCE = 'Crackles and wheezes are heard over both lungs.'


class StepFailed(Exception): pass


def build_run(folder:Path)->Path:
    "The tutorial's small run: 32 synthetic clips, 2 steps of MAE pre-training, 2 of alignment."
    import torch
    from acula.testing import tiny_run
    from acula.train import TrainConfig, pretrain, fit
    torch.manual_seed(0)
    run = tiny_run(folder, n=32).path
    pretrain(TrainConfig.tiny(max_steps=2), run, show_progress=False)
    fit(TrainConfig.tiny(max_steps=2), run, show_progress=False)
    return run


def lab_settings(folder:Path)->Path:
    "A JupyterLab settings folder with news and update checks off (no pop-ups over the notebook)."
    d = folder/'@jupyterlab'/'apputils-extension'
    d.mkdir(parents=True, exist_ok=True)
    (d/'notification.jupyterlab-settings').write_text(json.dumps({'fetchNews': 'false',
                                                                 'checkForUpdates': False}))
    return folder


def start_lab(root:Path, run:Path, port:int, token:str, log:Path, home:Path)->subprocess.Popen:
    "JupyterLab on 127.0.0.1:port serving `root`, in its own process group, ACULA_RUN=run for kernels."
    env = dict(os.environ, ACULA_RUN=str(run), JUPYTERLAB_SETTINGS_DIR=str(lab_settings(home/'settings')),
               JUPYTERLAB_WORKSPACES_DIR=str(home/'workspaces'), HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}',
           '--LabApp.expose_app_in_browser=True', '--ServerApp.open_browser=False']
    if hasattr(os, 'geteuid') and os.geteuid() == 0: cmd.append('--allow-root')   # CI containers run as root
    return subprocess.Popen(cmd, env=env, stdout=log.open('w'), stderr=subprocess.STDOUT,
                            start_new_session=True)


def api(port:int, token:str, path:str, method:str='GET'):
    "One call of the Jupyter server's REST API; the decoded JSON (or None)."
    req = urllib.request.Request(f'http://127.0.0.1:{port}{path}', method=method,
                                 headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def wait_ready(proc, port:int, token:str, timeout:float=90):
    "Wait until the server answers /api/status."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: raise StepFailed(f"JupyterLab exited with code {proc.returncode}")
        try:
            api(port, token, '/api/status')
            return
        except OSError: time.sleep(0.5)
    raise StepFailed(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")


def stop_lab(proc, port:int, token:str):
    "Shut the kernels and the server down (REST), then end the server's process group."
    kernel_pids = []
    try:
        import psutil
        kernel_pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except Exception: pass
    try:
        for k in api(port, token, '/api/kernels') or []: api(port, token, f"/api/kernels/{k['id']}", 'DELETE')
        api(port, token, '/api/shutdown', 'POST')
        proc.wait(timeout=15)
    except Exception: pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None: break
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: break
        try: proc.wait(timeout=10)
        except subprocess.TimeoutExpired: pass
    for pid in kernel_pids:                         # kernels run in sessions of their own
        try: os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError): pass


def explorer_text(page, cls:str)->str:
    return page.locator(f'.{cls}').first.inner_text()


def drive(page, url:str, shots:Path, timeout_s:float)->dict:
    "The browser steps; each failure names its step."
    ms, out = int(timeout_s*1000), {}
    def step(name, fn):
        print(f"-- {name}", flush=True)
        try: return fn()
        except StepFailed: raise
        except Exception as e: raise StepFailed(f"{name}: {type(e).__name__}: {e}") from None
    def shot(name, loc=None):
        p = shots/name
        if loc is not None: loc.scroll_into_view_if_needed()
        page.screenshot(path=str(p))
        out.setdefault('screenshots', []).append(str(p))

    step('open the notebook in JupyterLab', lambda: (page.goto(url),
         page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=ms)))
    idle = ("() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar, .jp-StatusBar-Widget')"
            "?.innerText || '')")
    started = ("() => [...document.querySelectorAll('.jp-InputPrompt')]"
               ".some(e => /\\[(\\*|\\d+)\\]/.test(e.innerText))")
    step('wait for the kernel to be idle', lambda: page.wait_for_function(idle, timeout=ms))
    def run_all():
        try:
            page.locator('.lm-MenuBar-item', has_text='Run').first.click()
            item = page.locator('.lm-Menu-item', has_text='Run All Cells').first
            out['run_all_command'] = item.get_attribute('data-command', timeout=5000)
            item.click(timeout=5000)
            out['run_all'] = 'menu Run → Run All Cells'
        except Exception:
            page.keyboard.press('Escape')
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            out['run_all'] = 'command notebook:run-all-cells'
        try: page.wait_for_function(started, timeout=30_000)
        except Exception:                            # a request lost while the kernel connected: ask again
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            out['run_all'] += ', repeated by command'
            page.wait_for_function(started, timeout=ms)
    step('run all cells', run_all)
    def explorer():
        try: page.wait_for_selector('.acula-clip', timeout=ms)
        except Exception:
            errs = page.locator('[data-mime-type="application/vnd.jupyter.stderr"], '
                                '[data-mime-type="application/vnd.jupyter.error"]').all_inner_texts()
            tail = f"; cell errors: {errs[-1][-800:]}" if errs else ''
            raise StepFailed("the explorer (.acula-clip) did not appear" + tail)
        page.locator('.acula-results').first.scroll_into_view_if_needed()
    step('wait for the explorer', explorer)
    def render():
        spec = page.locator('.acula-spec').first
        if not spec.is_visible(): raise StepFailed("the spectrogram box (.acula-spec) is not visible")
        out['spectrogram'] = ('plotly figure' if spec.locator('.js-plotly-plot, .plot-container').count() else
                              'placeholder: ' + spec.inner_text().strip())
        if not page.locator('.acula-audio audio').count():
            raise StepFailed("no <audio> player in .acula-audio")
        n = page.locator('.acula-results .acula-item').count()
        if n < 1: raise StepFailed("the report list (.acula-results) is empty")
        if not explorer_text(page, 'acula-report').strip(): raise StepFailed("the clip's report is empty")
        out['reports_listed'] = n
        shot('01_explorer.png', page.locator('.acula-clip').first)
    step('check spectrogram, player and report list render', render)
    def other_clip():
        before = explorer_text(page, 'acula-results')
        sel = page.locator('.acula-clip select').first
        opts = sel.locator('option').all_inner_texts()
        if len(opts) < 2: raise StepFailed(f"only {len(opts)} clip(s) in the menu")
        sel.select_option(label=opts[1])
        page.wait_for_function("b => { const e = document.querySelector('.acula-results');"
                               " return e && e.innerText !== b; }", arg=before, timeout=ms)
        out['clips'], out['second_clip'] = len(opts), opts[1]
        shot('02_other_clip.png', page.locator('.acula-clip').first)
    step('select another clip and check the retrieved list changes', other_clip)
    def text_query():
        page.locator('.acula-query input').first.fill(SENTENCE)
        page.locator('.acula-query-button').first.click()
        page.wait_for_selector('.acula-text-results .acula-item', timeout=ms)
        n = page.locator('.acula-text-results .acula-item').count()
        try:                                          # the rows are their own widgets: they can come later
            page.wait_for_function("n => document.querySelectorAll('.acula-text-clip audio').length >= n &&"
                                   " document.querySelectorAll('.acula-text-clip .js-plotly-plot').length >= n",
                                   arg=n, timeout=ms)
        except Exception: pass                        # the counts below say what is missing
        rows = page.locator('.acula-text-clip')
        players, specs = rows.locator('audio').count(), rows.locator('.js-plotly-plot').count()
        if (players, specs) != (n, n):
            raise StepFailed(f"{n} clips found but {specs} spectrograms and {players} players beside them")
        out['clips_found'], out['players_found'], out['spectrograms_found'] = n, players, specs
        out['text_source'] = page.locator('.acula-text-results h4').first.inner_text()
        shot('03_text_query.png', page.locator('.acula-text-results').first)
    step('type a sentence and check clips come back', text_query)
    plot_sel = '.acula-umap .js-plotly-plot'
    def umap_ready():
        page.wait_for_selector(f'{plot_sel} .scatterlayer .trace .point', timeout=ms)
        page.locator(plot_sel).first.scroll_into_view_if_needed()
        out['umap_points'] = page.locator(f'{plot_sel} .scatterlayer .trace .point').count()
    step('wait for the UMAP view (plotly FigureWidget)', umap_ready)
    def chosen():
        return page.evaluate("() => { const s = document.querySelector('.acula-clip select');"
                             " return s.options[s.selectedIndex].text; }")
    def picked(pattern):
        page.wait_for_function("re => new RegExp(re).test(document.querySelector('.acula-picked')?.innerText"
                               " || '')", arg=pattern, timeout=ms)
        return page.evaluate("() => [...document.querySelectorAll('.acula-picked li')].map(e => e.innerText)")
    def umap_click():
        before = chosen()
        page.locator(plot_sel).first.scroll_into_view_if_needed()
        pts = page.evaluate(f"""() => [...document.querySelectorAll('{plot_sel} .scatterlayer .trace')]
            .map((t, k) => [...t.querySelectorAll('.point')].map(p => {{ const r = p.getBoundingClientRect();
            return [k, r.x + r.width / 2, r.y + r.height / 2]; }})).flat()""")
        if not pts: raise StepFailed("the UMAP view has no points to click")
        for k, x, y in pts:                          # the first point whose clip is not the one shown
            page.mouse.move(x, y); page.mouse.click(x, y)
            ids = picked(r'1 selected clip')
            if ids and ids[0] != before: break
        if chosen() != ids[0]:
            raise StepFailed(f"clicked point lists {ids[0]} but the explorer shows {chosen()}")
        out['umap_click'] = dict(before=before, after=ids[0])
        shot('05_umap_click.png', page.locator('.acula-umap').first)
        shot('05b_umap_click_explorer.png', page.locator('.acula-clip').first)   # the clip it opened
    step('click a UMAP point and check the explorer opens its clip', umap_click)
    def umap_lasso():
        page.locator(plot_sel).first.scroll_into_view_if_needed()   # the last screenshot scrolled away
        r = page.locator(f'{plot_sel} .nsewdrag').first.bounding_box()
        x0, y0, x1, y1 = r['x'] + 3, r['y'] + 3, r['x'] + r['width'] - 3, r['y'] + r['height'] - 3
        page.mouse.move(x0, y0); page.mouse.down()
        for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 5)]:   # a lasso round the whole plot area
            page.mouse.move(x, y, steps=12)
        page.mouse.up()
        ids = picked(r'\d+ selected clips')
        if len(ids) < 2: raise StepFailed(f"a lasso round every point listed {len(ids)} clip(s)")
        if chosen() != ids[0]:
            raise StepFailed(f"the lasso lists {ids[0]} first but the explorer shows {chosen()}")
        out['umap_lasso_clips'] = len(ids)
        shot('06_umap_lasso.png', page.locator('.acula-umap').first)
    step('lasso UMAP points and check they are listed and the first is opened', umap_lasso)
    shot('04_page.png')
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', help='an existing run folder with models/aligned (default: build a small one)')
    ap.add_argument('--timeout', type=float, default=240, help='seconds allowed for each browser wait')
    a = ap.parse_args()
    from acula.testing import free_port
    from playwright.sync_api import sync_playwright
    work = Path(tempfile.mkdtemp(prefix='acula-browser-'))
    proc = port = token = None
    try:
        if a.run: run = Path(a.run).resolve()
        else:
            print(f"-- build a small run in {work/'run'}", flush=True)
            run = build_run(work/'run')
        shots = run/'eval'/'screenshots'
        shots.mkdir(parents=True, exist_ok=True)
        root = work/'lab'
        root.mkdir()
        shutil.copy(NOTEBOOK, root/NOTEBOOK.name)          # outputs go to a copy, never the repository's file
        port, token = free_port(), secrets.token_hex(16)
        print(f"-- start JupyterLab on 127.0.0.1:{port} (log {shots/'jupyterlab.log'})", flush=True)
        proc = start_lab(root, run, port, token, shots/'jupyterlab.log', work)
        wait_ready(proc, port, token)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport=dict(width=1400, height=1600))
                url = f'http://127.0.0.1:{port}/lab/tree/{NOTEBOOK.name}?token={token}'
                try: res = drive(page, url, shots, a.timeout)
                except StepFailed:
                    try: page.screenshot(path=str(shots/'failure.png'))
                    except Exception: pass
                    raise
            finally: browser.close()
        print(json.dumps(res, indent=1))
        print(f"browser test passed; screenshots in {shots}")
        return 0
    except StepFailed as e:
        print(f"FAIL: browser test step failed: {e}", flush=True)
        return 1
    finally:
        if proc is not None: stop_lab(proc, port, token)


if __name__ == '__main__': sys.exit(main())
