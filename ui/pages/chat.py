"""Page script for the chat page (registered by app.py); the page lives in ui.chat."""

from ui import chat

chat.render()
