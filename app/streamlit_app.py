"""Streamlit entry script of the leaderboard app: ``streamlit run`` this file (or ``rbnlp app``).

The database URL comes from ``$RBNLP_DB`` (``rbnlp app --db URL`` sets it), else
``sqlite:///rbnlp.db`` in the working directory.
"""

from robustbench_nlp.app.ui import main

main()
