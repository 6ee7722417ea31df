"""Parses a micro /metrics page with prometheus_client's Prometheus text
parser and prints its samples as JSON: [[name, {labels}, value], ...].
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
samples = [[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]
json.dump(samples, sys.stdout)
