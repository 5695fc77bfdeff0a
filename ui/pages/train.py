"""Page script for the training page (registered by app.py); the page lives in ui.train."""

from ui import train

train.render()
