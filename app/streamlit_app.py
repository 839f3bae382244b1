"""Streamlit entry script of the leaderboard app: ``streamlit run`` this file (or ``rbnlp app``).

The database URL comes from ``$RBNLP_DB`` (``rbnlp app --db URL`` sets it), else
``sqlite:///rbnlp.db`` in the working directory.
"""

from robustbench_nlp.app.ui import main

# Streamlit (and AppTest) execute this file as ``__main__``; the guard keeps it inert
# when something else imports it, e.g. a spawned worker process re-importing the
# parent's main module.
if __name__ == "__main__":
    main()
