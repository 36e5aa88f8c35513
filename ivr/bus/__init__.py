"""Publish/subscribe between the controller's parts and its nodes: in-process, or Redis streams.

Infrastructure below the features: the ACD publishes agent and queue events here and the web
(desktops, chat) reads them; neither imports the other.
"""
