"""On-premise speech: audio from Asterisk, local recognizers, utterance -> intent.

Nothing here sends audio off the machine or downloads a model at run time: engines load models
that are already on disk (see ``models/README.md``) and fall back to DTMF when there are none.
"""
