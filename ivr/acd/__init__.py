"""ACD: agents, their states and queue memberships over AMI, screen pops, chats and callbacks."""
