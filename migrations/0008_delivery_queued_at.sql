-- When a delivery joined its subscription's queue (dispatched, replayed, or its subscription resumed): its retry
-- window runs from then, not from its first attempt. A receiver that stays down otherwise held each queued event
-- for a whole window in turn, one dead letter a day, and its backlog grew without end.
ALTER TABLE webhook_deliveries ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now();
