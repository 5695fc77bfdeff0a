"""Page script for the text-classification page (registered by app.py); the page lives in ui.classify."""

from ui import classify

classify.render()
