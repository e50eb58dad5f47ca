"""``heritage publish``: the static catalog site from the index."""

from __future__ import annotations

import argparse

from heritage.publish import add_publish_arguments

NAME = "publish"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="publish the static catalog site from the index")
    add_publish_arguments(p)
