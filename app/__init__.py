"""The Streamlit leaderboard app (installed as ``robustbench_nlp.app``).

``rbnlp app [--db URL]`` runs :data:`SCRIPT` with ``streamlit run``. The modules here have no
side effects at import time: :mod:`.queries` reads the database, :mod:`.charts` builds the
Altair charts, :mod:`.ui` draws the pages, and only the script :data:`SCRIPT` calls
:func:`robustbench_nlp.app.ui.main`.
"""

from pathlib import Path

#: the Streamlit script (``streamlit run SCRIPT``); reads the database from ``$RBNLP_DB``
SCRIPT = Path(__file__).resolve().with_name("streamlit_app.py")
