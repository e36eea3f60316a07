"""Collectors: folders, web pages, URL lists, watchers and scheduled jobs."""
