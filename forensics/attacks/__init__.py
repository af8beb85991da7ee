"""Recovery attacks: relearning (RTT) with its controls."""
