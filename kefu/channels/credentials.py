"""The credentials file `make run` gives Rasa: `credentials.yml` plus every channel configured in the environment.

Telegram, WeChat and the callback channel are added only when their settings are in the environment
(TELEGRAM_TOKEN…, WECHAT_TOKEN…, KEFU_CALLBACK_URL…), so secrets never live in git and an unconfigured channel
is simply absent.

    python -m kefu.channels.credentials credentials.yml var/credentials.yml
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

import yaml

# channel class path -> module with `credentials_from_env(env) -> Optional[dict]`
FROM_ENV = {
    "kefu.channels.telegram.TelegramInput": "kefu.channels.telegram",
    "kefu.channels.wechat.WeChatInput": "kefu.channels.wechat",
    "kefu.channels.callback.CallbackInput": "kefu.channels.callback",
}


def credentials(base: Mapping[str, Any], env: Mapping[str, str]) -> Dict[str, Any]:
    import importlib

    result = dict(base or {})
    for channel, module in FROM_ENV.items():
        settings = importlib.import_module(module).credentials_from_env(env)
        if settings is not None:
            result[channel] = settings
    return result


def main(argv=None) -> None:
    source, target = (argv or sys.argv[1:])[:2]
    merged = credentials(yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}, os.environ)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text(yaml.safe_dump(merged, allow_unicode=True), encoding="utf-8")
    os.chmod(target, 0o600)
    print("channels: " + ", ".join(name.rsplit(".", 1)[-1] for name in merged))


if __name__ == "__main__":
    main()
