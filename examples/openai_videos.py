"""Seedance 1.5 Pro through runbase's OpenAI-compatible Videos API, with OpenAI's own SDK.

pip install openai
export RUNBASE_API_KEY=sk-...        # the key `make serve` printed
python examples/openai_videos.py [FIRST_FRAME.png]
"""

import os
import sys
import warnings
from pathlib import Path

from openai import OpenAI, omit

# The SDK marks its Videos methods deprecated (OpenAI is retiring Sora); they work as ever.
warnings.filterwarnings("ignore", "The Sora API", DeprecationWarning)

base_url = os.environ.get("RUNBASE_BASE_URL", "http://127.0.0.1:8000")
client = OpenAI(base_url=f"{base_url}/v1", api_key=os.environ["RUNBASE_API_KEY"])
first_frame = Path(sys.argv[1]) if len(sys.argv) > 1 else omit  # optional

video = client.videos.create_and_poll(
    model="sora-2",  # read as bytedance/seedance-1.5-pro
    prompt="A paper boat drifts across a pond at dawn",
    size="1280x720",
    seconds="4",
    input_reference=first_frame,
)
if video.status == "completed":
    client.videos.download_content(video.id).write_to_file("boat.mp4")
    print("saved boat.mp4")
else:
    print("failed:", video.error.code, video.error.message)
    sys.exit(1)
