"""What several integration test modules share (their helpers live in devtools)."""

BASE_MS = 1_763_078_400_000  # 2025-11-14 00:00 UTC: in the past, inside the accepted range
