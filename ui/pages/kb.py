"""Page script for the knowledge-base page (registered by app.py); the page lives in ui.kb."""

from ui import kb

kb.render()
