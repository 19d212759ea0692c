"""``telestack topics``: create the stack's Kafka topics with their partitions, retention and compaction.

telestack topics create        # what the compose kafka-topics job and `telestack demo` run
telestack topics show          # the layout, without touching Kafka
"""

from __future__ import annotations

import argparse
import sys

from telestack.core.cli import add_settings_arguments, settings_from_args
from telestack.kafka_admin.topics import TopicsSettings, create_topics, plan_topics

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create", "show"], help="create the missing topics, or show the layout")
    parser.add_argument("--timeout", type=float, default=60.0, help="how long to wait for Kafka, s (default: 60)")
    add_settings_arguments(parser, TopicsSettings)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(TopicsSettings, args)
    layout = settings.topic_layout
    out = sys.stdout
    for plan in plan_topics(settings.kafka, layout):
        config = " ".join(f"{key}={value}" for key, value in sorted(plan.config.items()))
        out.write(f"{plan.name:<16} partitions={plan.partitions} replicas={layout.replication_factor} {config}\n")
    if args.action == "show":
        return 0
    created = create_topics(settings.kafka, layout, timeout_s=args.timeout)
    out.write(f"created: {', '.join(created)}\n" if created else "every topic exists already\n")
    return 0
