"""Result pages for a browser under /ui/: server-rendered HTML (Jinja2), with the
script and style the pages use in `static/` (nothing loaded from elsewhere)."""
