"""The run report: figures (``figures``) and one self-contained HTML page (``html``)."""
