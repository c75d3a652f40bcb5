"""Render nbs/index.ipynb to README.md without Quarto (nbdev_readme needs Quarto, which CI lacks).

Markdown cells are copied; visible code cells become ```python blocks; `#| hide` cells are dropped."""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
nb = json.loads((root/'nbs/index.ipynb').read_text())
parts = []
for c in nb['cells']:
    src = ''.join(c['source']).strip('\n')
    if c['cell_type'] == 'markdown': parts.append(src)
    elif c['cell_type'] == 'code' and not any(l.strip().replace(' ', '') in ('#|hide',) for l in src.splitlines()):
        parts.append('```python\n' + src + '\n```')
text = '<!-- Generated from nbs/index.ipynb by .ci/readme.py; edit the notebook, not this file. -->\n\n' + '\n\n'.join(parts) + '\n'
if '--check' in sys.argv:
    if (root/'README.md').read_text() != text: sys.exit('README.md is out of date with nbs/index.ipynb: run python .ci/readme.py')
else: (root/'README.md').write_text(text)
