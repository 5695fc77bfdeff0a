"""Every user-visible string of the app, in Chinese (the default) and English.

`t("key", **fields)` returns the string in the session's language (`st.session_state["lang"]`, set by
the switch in the sidebar), formatted with `fields`. A key missing from the table is a bug and raises.
"""

from __future__ import annotations

import streamlit as st

__all__ = ["LANGUAGES", "STRINGS", "lang", "t"]

LANGUAGES = {"zh": "中文", "en": "English"}

STRINGS: dict[str, tuple[str, str]] = {
    # app shell
    "app.title": ("rolechat", "rolechat"),
    "nav.chat": ("聊天", "Chat"),
    "nav.kb": ("知识库", "Knowledge bases"),
    "nav.train": ("训练角色", "Train a persona"),
    "nav.classify": ("文本分类", "Classify text"),
    "lang.label": ("语言 / Language", "语言 / Language"),
    "config.error": ("配置文件有误：{error}", "Configuration error: {error}"),
    # access: the login gate and the allowed server paths (ui/access.py)
    "auth.password": ("密码", "Password"),
    "auth.submit": ("登录", "Log in"),
    "auth.prompt": ("这个应用设置了密码，请先登录。", "This app has a password; log in first."),
    "auth.wrong": ("密码不对，请重试。", "Wrong password; try again."),
    "auth.locked": (
        "密码错误次数太多，请 {seconds} 秒后再试。",
        "Too many wrong passwords; try again in {seconds} s.",
    ),
    "auth.logout": ("退出登录", "Log out"),
    "auth.all_interfaces": ("所有网络接口（未设置 server.address）", "every network interface (server.address unset)"),
    "auth.refused": (
        "这个应用正在 {address} 上监听，其他机器也能访问，但没有设置密码，所以不提供任何页面。",
        "This app listens on {address}, so other machines can reach it, and no password is set: it serves no pages.",
    ),
    "auth.refused_fix": (
        "二选一，然后重新启动：\n\n"
        "1. **只在本机使用**：在 rolechat 目录里运行 `streamlit run app.py`（`.streamlit/config.toml` "
        '已设置 `server.address = "127.0.0.1"`），或加上 `--server.address 127.0.0.1`。\n'
        "2. **给别人用**：运行 `python -m ui.password` 生成密码哈希，写进 `{config}` 的 `[app]` 一节："
        '`password_hash = "scrypt$..."`（或设置环境变量 `ROLECHAT_APP_PASSWORD_HASH`）。'
        '需要按路径索引文件夹时，再设置 `path_roots = ["/允许的/文件夹"]`。',
        "Pick one, then restart:\n\n"
        "1. **Only on this machine**: run `streamlit run app.py` in the rolechat folder (`.streamlit/config.toml` "
        'sets `server.address = "127.0.0.1"`), or add `--server.address 127.0.0.1`.\n'
        "2. **Serve it to others**: run `python -m ui.password` to make a password hash and put it in the "
        '`[app]` section of `{config}`: `password_hash = "scrypt$..."` (or set `ROLECHAT_APP_PASSWORD_HASH`). '
        'To index folders by path, also set `path_roots = ["/allowed/folder"]`.',
    ),
    "access.roots": ("只能使用这些文件夹里的路径：{roots}", "Only paths inside these folders are allowed: {roots}"),
    "access.path_off": (
        "应用对其他人开放时，不能按服务器路径读取文件（上传不受影响）。要开放某些文件夹，在 [app] 中设置 path_roots。",
        "While the app is served to others it reads no server paths (uploads still work). To allow some folders, "
        "set path_roots in [app].",
    ),
    "access.path_outside": (
        "不允许的路径：{path} 不在允许的文件夹里（{roots}）。",
        "Path refused: {path} is not inside the allowed folders ({roots}).",
    ),
    "access.path_invalid": ("不是可用的路径：{path}（{error}）", "Not a usable path: {path} ({error})"),
    "access.path_links": (
        "不允许的路径：{path} 里有指向允许文件夹之外的符号链接：{links}",
        "Path refused: {path} holds symlinks that lead outside the allowed folders: {links}",
    ),
    # chat: model
    "chat.title": ("聊天", "Chat"),
    "chat.loading": ("正在加载模型…", "Loading the model…"),
    "chat.load_failed": ("模型加载失败：{error}", "The model could not be loaded: {error}"),
    "chat.load_fix": (
        "在 rolechat.toml 的 [llm] model 或环境变量 ROLECHAT_LLM_MODEL 中指定一个本地模型文件夹，然后刷新页面。",
        "Point [llm] model in rolechat.toml or ROLECHAT_LLM_MODEL at a local model folder, then reload.",
    ),
    "chat.model": ("模型 **{model}** · {device} · {dtype}", "Model **{model}** · {device} · {dtype}"),
    "chat.demo": (
        "当前是内置演示模型，回答只用于演示流程。",
        "This is the built-in demo model; its replies only demonstrate the flow.",
    ),
    "chat.placeholder": ("输入消息，回车发送", "Type a message, Enter to send"),
    "chat.empty": (
        "开始聊天吧：在左侧选择角色和知识库，然后在下方输入问题。",
        "Start chatting: pick a persona and a knowledge base on the left, then ask below.",
    ),
    "chat.stop": ("停止生成", "Stop generating"),
    "chat.tone": ("语气：{label} {score:.2f}", "tone: {label} {score:.2f}"),
    "side.tone": ("语气检查", "Tone check"),
    "side.tone_help": (
        "选一个文本分类器，为每条新回复标注标签（显示在回复下方）。",
        "Pick a text classifier to label every new reply (shown under the reply).",
    ),
    "chat.stopped": ("（已停止）", "(stopped)"),
    "chat.error": ("生成失败：{error}", "Generation failed: {error}"),
    "chat.meta": (
        "{who} · {seconds:.1f} 秒 · {tokens} 词元 · {tps:.1f} 词元/秒",
        "{who} · {seconds:.1f} s · {tokens} tokens · {tps:.1f} tok/s",
    ),
    "chat.meta_kb": ("知识库「{kb}」", "KB “{kb}”"),
    "chat.mode_extract": ("抽取式回答（原文摘录）", "extractive answer (quoted)"),
    "chat.mode_generate": ("模型生成的回答", "generated answer"),
    "chat.no_sources": (
        "知识库「{kb}」中没有找到相关内容，这个回答没有参考资料。",
        "Nothing relevant was found in “{kb}”; this answer has no sources.",
    ),
    "chat.sources": ("参考来源（{n}）", "Sources ({n})"),
    "chat.source_line": ("**[{n}]** `{file}`{where} · 相关度 {score}", "**[{n}]** `{file}`{where} · score {score}"),
    # chat: sidebar
    "side.persona": ("角色", "Persona"),
    "side.base": ("基础模型（不加角色）", "Base model (no persona)"),
    "side.system_prompt": ("系统提示词", "System prompt"),
    "side.no_system_prompt": ("基础模型没有系统提示词。", "The base model has no system prompt."),
    "side.broken": ("不可用的角色（{n}）", "Unavailable personas ({n})"),
    "side.reload_personas": ("重新扫描角色", "Rescan personas"),
    "side.kb_header": ("知识库", "Knowledge base"),
    "side.kb_on": ("使用知识库回答", "Answer from a knowledge base"),
    "side.kb_pick": ("选择知识库", "Knowledge base"),
    "side.kb_none": (
        "还没有知识库，先到「知识库」页面建立一个。",
        "No knowledge base yet: create one on the Knowledge bases page.",
    ),
    "side.k": ("检索片段数 k", "Chunks retrieved (k)"),
    "side.mode": ("检索方式", "Retriever"),
    "mode.hybrid": ("混合（向量 + BM25）", "Hybrid (dense + BM25)"),
    "mode.bm25": ("BM25 关键词", "BM25 keywords"),
    "mode.dense": ("向量", "Dense vectors"),
    "side.gen_header": ("生成参数", "Generation"),
    "side.temperature": ("温度（0 = 确定性）", "Temperature (0 = deterministic)"),
    "side.top_p": ("Top-p", "Top-p"),
    "side.max_new_tokens": ("最大生成词元数", "Max new tokens"),
    "side.clear": ("清空对话", "Clear conversation"),
    "side.condense": ("结合对话历史理解追问", "Use the conversation to understand follow-ups"),
    "side.condense_help": (
        "先让模型把追问改写成独立的问题再检索（多一次生成）。",
        "The model first rewrites a follow-up into a standalone question (one extra generation).",
    ),
    "chat.retrieving": ("正在检索知识库…", "Searching the knowledge base…"),
    "chat.condensing": ("正在结合上文改写问题：{q}", "Rewriting the follow-up with the conversation: {q}"),
    "chat.standalone": ("检索用的问题：{q}", "Searched for: {q}"),
    # chat: characters, the user persona, what the model saw
    "side.user_header": ("你的身份", "You"),
    "side.import_card": ("导入角色卡", "Import a character card"),
    "side.import_file": ("角色卡文件（PNG 或 JSON）", "Card file (PNG or JSON)"),
    "side.import_overwrite": ("覆盖同名角色", "Replace a character of the same name"),
    "side.import_go": ("导入", "Import"),
    "side.import_done": ("已导入角色「{name}」。", "Imported “{name}”."),
    "side.import_failed": ("导入失败：{error}", "Import failed: {error}"),
    "side.import_risky": (
        "设定条目「{entry}」的关键词 {key} 含嵌套量词，匹配可能极慢："
        "每次匹配限时 chat.lore_regex_timeout 秒，超时的条目会被停用。",
        "Lorebook entry “{entry}”: key {key} nests quantifiers, which can take exponential time to match; each match "
        "gets chat.lore_regex_timeout seconds, and an entry whose key takes longer is turned off.",
    ),
    "side.user_name": ("你的名字", "Your name"),
    "side.user_description": ("关于你（会告诉角色）", "About you (told to the character)"),
    "side.greeting": ("开场白", "Greeting"),
    "side.greeting_option": ("开场白 {n}：{preview}", "Greeting {n}: {preview}"),
    "chat.greeting_meta": ("{who} · 开场白", "{who} · greeting"),
    "chat.prompt": (
        "模型看到的内容（{tokens} / {budget} 词元）",
        "What the model saw ({tokens} / {budget} tokens)",
    ),
    "chat.prompt_rendered": (
        "**分词器收到的完整文本**（已套用对话模板）",
        "**The exact text the tokenizer receives** (chat template applied)",
    ),
    "chat.prompt_fixed": ("模型看到的内容（未调用模型）", "What the model saw (the model was not called)"),
    "chat.part_line": ("**{kind}** · {label} · {tokens} 词元", "**{kind}** · {label} · {tokens} tokens"),
    "chat.part_dropped": ("（超出预算，未发送）", "(over budget, not sent)"),
    "chat.part_from": ("来自 {book}", "from {book}"),
    "side.scene": ("群聊场景（选两个以上角色）", "Scene (pick two or more characters)"),
    "side.scene_help": (
        "每个角色用自己的角色卡和自己的适配器回复，轮流发言。",
        "Each character replies with its own card and its own adapter, in turn.",
    ),
    "side.next_speaker": ("谁来发言", "Who speaks next"),
    "side.order_natural": (
        "自然（被点名的先说，再看各角色的健谈程度）",
        "Natural (whoever is named first, then by talkativeness)",
    ),
    "side.order_list": ("按顺序（每个角色都说一次）", "List (everyone once, in order)"),
    "side.order_rr": ("轮流", "Round-robin"),
    "side.order_pick": ("只让{name}说", "Only {name} (manual)"),
    "side.world_header": ("本对话的设定", "This chat's world"),
    "side.lorebooks": ("本对话的世界书", "Lorebooks of this chat"),
    "side.lorebooks_help": (
        "与角色自己的世界书一起扫描（也用作群聊的群组世界书），随对话保存。",
        "Scanned with the character's own book (a scene's group lorebook too); saved with the chat.",
    ),
    "side.lorebook_upload": ("上传世界书（JSON 或 PNG 角色卡）", "Upload a lorebook (JSON, or a PNG card)"),
    "side.lorebook_add": ("加入书库并绑定", "Add to the library and attach"),
    "side.lorebook_failed": ("世界书读取失败：{error}", "The lorebook could not be read: {error}"),
    "side.scenario": ("场景（覆盖角色卡的场景）", "Scenario (overrides the cards')"),
    "side.scenario_help": (
        "填写后代替每个角色卡里的场景（SillyTavern 的场景覆盖）。",
        "Replaces every card's scenario (SillyTavern's scenario override).",
    ),
    "side.note": ("作者注释", "Author's note"),
    "side.note_help": (
        "每轮插入到对话中倒数第 N 条消息处的提示。",
        "A note inserted every turn N messages from the end of the chat.",
    ),
    "side.note_depth": ("作者注释的深度", "Author's note depth"),
    "chat.scene_continue": ("让角色们继续", "Let the characters go on"),
    "conv.header": ("对话记录", "Conversations"),
    "conv.new": ("新对话", "New chat"),
    "conv.open_failed": ("无法打开对话：{error}", "Could not open the chat: {error}"),
    "conv.bad_file": ("无法读取的对话文件（已保留）：{error}", "Unreadable chat file (left in place): {error}"),
    "conv.save_failed": ("对话保存失败：{error}", "The chat could not be saved: {error}"),
    "conv.edit": ("编辑", "Edit"),
    "conv.save": ("保存", "Save"),
    "conv.delete": ("删除", "Delete"),
    "conv.regenerate": ("重新生成（保留之前的版本）", "Regenerate (the earlier versions are kept)"),
    "part.system": ("系统提示词", "System prompt"),
    "part.card": ("角色卡", "Card"),
    "part.user-persona": ("用户身份", "User persona"),
    "part.lore-constant": ("常驻设定", "Always-on lore"),
    "part.lore-triggered": ("触发的设定", "Triggered lore"),
    "part.lore-skipped": ("未放入的设定（不发送）", "Lore left out (not sent)"),
    "part.authors-note": ("作者注释", "Author's note"),
    "part.memory": ("角色记忆", "Character memory"),
    "part.knowledge": ("知识库片段", "Knowledge passage"),
    "part.example": ("示例对话", "Example dialogue"),
    "part.history": ("历史消息", "History"),
    "part.message": ("本条消息", "This message"),
    "part.post-history": ("历史后指令", "Post-history instructions"),
    "part.depth-prompt": ("角色备注", "Character's note"),
    "part.question": ("检索用的问题（不发送）", "Search question (not sent)"),
    "part.notice": ("提示（不发送）", "Notice (not sent)"),
    "part.summary": ("早先对话的概要", "Summary of earlier turns"),
    # knowledge-base page
    "kb.title": ("知识库", "Knowledge bases"),
    "kb.list_header": ("已有知识库", "Knowledge bases"),
    "kb.none": (
        "还没有知识库：在下面上传文件或填写文件夹路径来建立一个。",
        "No knowledge base yet: upload files or give a folder below to create one.",
    ),
    "kb.summary": ("📚 {kb} · {docs} 个文档 · {chunks} 个片段", "📚 {kb} · {docs} documents · {chunks} chunks"),
    "kb.empty_kb": ("这个知识库里没有文档。", "This knowledge base has no documents."),
    "kb.embedder": (
        "嵌入模型：{embedder} · {dim} 维 · 前缀：{prefix}（换模型请用 `rolechat kb reembed`）",
        "Embedder: {embedder} · {dim} dimensions · prefixes: {prefix} (to change it: `rolechat kb reembed`)",
    ),
    "kb.prefix_none": ("无", "none"),
    "kb.col.file": ("文件", "File"),
    "kb.col.kind": ("类型", "Type"),
    "kb.col.folder": ("所在文件夹", "Folder"),
    "kb.col.encoding": ("编码", "Encoding"),
    "kb.col.chunks": ("片段", "Chunks"),
    "kb.col.size": ("大小", "Size"),
    "kb.col.status": ("状态", "Status"),
    "kb.col.reason": ("原因", "Reason"),
    "kb.doc_pick": ("选择文档", "Document"),
    "kb.delete_doc": ("删除这个文档", "Delete this document"),
    "kb.doc_deleted": ("已删除文档 {doc}（{chunks} 个片段）。", "Deleted {doc} ({chunks} chunks)."),
    "kb.confirm_delete": ("确认删除整个知识库「{kb}」", "Yes, delete the whole knowledge base “{kb}”"),
    "kb.delete_kb": ("删除知识库", "Delete knowledge base"),
    "kb.kb_deleted": ("已删除知识库「{kb}」。", "Deleted the knowledge base “{kb}”."),
    "kb.add_header": ("添加文档", "Add documents"),
    "kb.target": ("加入知识库", "Into knowledge base"),
    "kb.new_kb": ("＋ 新建知识库", "+ New knowledge base"),
    "kb.new_name": ("新知识库名称", "Name of the new knowledge base"),
    "kb.tab_upload": ("上传文件", "Upload files"),
    "kb.tab_folder": ("文件夹路径", "Folder path"),
    "kb.upload": (
        "选择文件（md、txt、pdf、docx、html、json、csv…）",
        "Choose files (md, txt, pdf, docx, html, json, csv, …)",
    ),
    "kb.index_files": ("索引上传的文件", "Index the uploaded files"),
    "kb.folder": ("服务器上的文件夹或文件路径", "A folder or file path on this machine"),
    "kb.index_folder": ("索引这个文件夹", "Index this folder"),
    "kb.index_failed": ("索引失败：{error}", "Indexing failed: {error}"),
    "kb.progress_start": ("准备中…", "Starting…"),
    "kb.phase.scan": ("读取与切分", "Reading and splitting"),
    "kb.phase.embed": ("计算向量", "Embedding"),
    "kb.phase.store": ("写入索引", "Storing"),
    "kb.phase.done": ("完成", "Done"),
    "kb.last_report": ("**最近一次索引报告**", "**Last indexing report**"),
    "kb.report_line": (
        "知识库「{kb}」：新增 {added} 个片段，移除 {removed} 个，共 {total} 个 · 用时 {seconds} 秒",
        "“{kb}”: {added} chunks added, {removed} removed, {total} in total · {seconds} s",
    ),
    "kb.status.indexed": ("新索引", "Indexed"),
    "kb.status.updated": ("已更新", "Updated"),
    "kb.status.unchanged": ("未变化", "Unchanged"),
    "kb.status.removed": ("已移除", "Removed"),
    "kb.status.skipped": ("已跳过", "Skipped"),
    "kb.status.failed": ("失败", "Failed"),
    "kb.sample_indexing": (
        "首次运行：正在把示例文件夹 {folder} 索引到「{kb}」…",
        "First run: indexing the sample folder {folder} into “{kb}”…",
    ),
    "kb.sample_done": (
        "示例知识库「{kb}」已就绪（{chunks} 个片段），可以直接提问了。",
        "The sample knowledge base “{kb}” is ready ({chunks} chunks): ask away.",
    ),
    "kb.sample_failed": ("示例知识库建立失败：{error}", "Indexing the sample knowledge base failed: {error}"),
    "kb.search_header": ("检索测试", "Try retrieval"),
    "kb.search_kb": ("知识库", "Knowledge base"),
    "kb.query": ("问题", "Question"),
    "kb.query_placeholder": ("输入一个问题，查看检索到的片段", "Type a question to see the chunks it retrieves"),
    "kb.search_failed": ("检索失败：{error}", "Search failed: {error}"),
    "kb.no_hits": ("没有找到相关片段。", "No relevant chunk found."),
    "kb.hits": ("{n} 个片段 · {ms:.0f} 毫秒", "{n} chunks · {ms:.0f} ms"),
    "kb.score": ("分数", "score"),
    # training page
    "train.title": ("训练角色", "Train a persona"),
    "train.intro": (
        "用对话数据训练一个 LoRA 角色。训练在后台进程中运行，关闭页面不会中断；完成后角色会出现在聊天页的角色列表里。",
        "Train a LoRA persona from dialogue data. Training runs in a background process that survives "
        "closing the page; when it finishes the persona appears in the chat page's picker.",
    ),
    "train.data_header": ("数据集", "Dataset"),
    "train.source": ("数据来源", "Data from"),
    "train.source.sample": ("示例数据集", "A sample dataset"),
    "train.source.upload": ("上传文件", "Upload a file"),
    "train.source.path": ("文件路径", "A file path"),
    "train.no_samples": ("没有找到示例数据集（examples/personas）。", "No sample datasets found (examples/personas)."),
    "train.sample": ("示例", "Sample"),
    "train.upload": (
        "Alpaca / ShareGPT / OpenAI 格式的 JSON 或 JSONL",
        "JSON or JSONL in Alpaca / ShareGPT / OpenAI format",
    ),
    "train.path": ("数据文件路径", "Path of the data file"),
    "train.path_missing": ("文件不存在：{path}", "No such file: {path}"),
    "train.name": ("角色名（英文、数字、_ 或 -）", "Persona name (letters, digits, _ or -)"),
    "train.name_help": ("也是角色文件夹的名字。", "Also the name of the persona's folder."),
    "train.display": ("显示名称", "Display name"),
    "train.system": ("系统提示词", "System prompt"),
    "train.system_help": ("留空则使用数据集自带的系统提示词。", "Leave empty to use the dataset's own system prompt."),
    "train.hparams": ("训练参数", "Hyperparameters"),
    "train.hparams_help": (
        "留空的项使用配置文件 [train] 或默认值。",
        "Empty fields use [train] in the config file or the defaults.",
    ),
    "train.epochs": ("轮数 epochs", "Epochs"),
    "train.max_steps": ("最多步数（优先于轮数）", "Max steps (overrides epochs)"),
    "train.lr": ("学习率", "Learning rate"),
    "train.rank": ("LoRA 秩 r", "LoRA rank"),
    "train.batch": ("批大小", "Batch size"),
    "train.max_length": ("最大长度（词元）", "Max length (tokens)"),
    "train.more": (
        "其他全部训练参数（与 rolechat train 的选项一一对应）",
        "Every other setting (one per rolechat train flag)",
    ),
    "train.default": ("默认", "default"),
    "train.overwrite": ("覆盖已有的角色 {name}", "Replace the existing persona {name}"),
    "train.exists": (
        "角色 {name} 已经存在：勾选覆盖，或换一个名字。",
        "Persona {name} exists: tick “replace” or pick another name.",
    ),
    "train.lint.run": ("检查数据", "Check the data"),
    "train.lint.running": (
        "正在检查数据（加载分词器并按聊天模板渲染）…",
        "Checking the data (loading the tokenizer, rendering with the chat template)…",
    ),
    "train.lint.hint": (
        "训练前建议先检查数据：条数、长度、被跳过的记录和一个渲染后的样例。",
        "Check the data before training: counts, lengths, skipped records and a rendered example.",
    ),
    "train.lint.failed": ("数据检查失败：{error}", "The data check failed: {error}"),
    "train.lint.records": ("记录", "Records"),
    "train.lint.used": ("可用对话", "Conversations used"),
    "train.lint.skipped": ("跳过/重复", "Skipped / duplicates"),
    "train.lint.examples": ("训练 / 验证样本", "Train / eval examples"),
    "train.lint.line": (
        "基座 {model} · 模板 {template} · {tokens} 词元（监督 {ratio:.0%}）· 长度 最小 {min} / 中位 {p50} / "
        "p90 {p90} / 最大 {max} · 截断 {truncated} · 过长跳过 {too_long}",
        "base {model} · template {template} · {tokens} tokens ({ratio:.0%} supervised) · length min "
        "{min} / p50 {p50} / p90 {p90} / max {max} · truncated {truncated} · too long {too_long}",
    ),
    "train.lint.issues": ("跳过的记录（{n}）", "Skipped records ({n})"),
    "train.lint.example": (
        "**渲染后的第一个样本**（⟦ ⟧ 内是模型要学习输出的部分）：",
        "**The first example, rendered** (the model learns to produce what is inside ⟦ ⟧):",
    ),
    "train.busy": (
        "角色 {name} 正在训练，结束后才能开始新的训练。",
        "Persona {name} is training; start another when it ends.",
    ),
    "train.start": ("开始训练", "Start training"),
    "train.runs_header": ("训练任务", "Training runs"),
    "train.run_pick": ("任务", "Run"),
    "train.run_title": ("**{name}** · 数据 {data} · 开始于 {started}", "**{name}** · data {data} · started {started}"),
    "train.starting": ("正在启动（加载模型和数据）…", "Starting (loading the model and data)…"),
    "train.progress": ("第 {step} / {total} 步", "Step {step} / {total}"),
    "train.loss": ("训练损失", "Train loss"),
    "train.eval_loss": ("验证损失", "Eval loss"),
    "train.tokens_s": ("词元/秒", "Tokens/s"),
    "train.elapsed": ("已用时间", "Elapsed"),
    "train.done": (
        "训练完成：角色 {name} 已可在聊天页使用。",
        "Training finished: persona {name} is ready in the chat.",
    ),
    "train.go_chat": ("去聊天", "Go to chat"),
    "train.eval": ("训练后评估角色（与基础模型对比）", "Evaluate the persona afterwards (against the base model)"),
    "train.eval_help": (
        "训练结束后运行 rolechat eval-persona：角色和基础模型在同一系统提示词下回答留出的验证样本，"
        "比较 ROUGE-L、角色分、出戏比例、自行结束比例和 distinct-1/2。样本越多越慢。",
        "After training, run rolechat eval-persona: the persona and the base model answer the held-out examples "
        "under the same system prompt; ROUGE-L, character score, breaking character, stopping by itself and "
        "distinct-1/2 side by side. Takes longer with more examples.",
    ),
    "train.evaluating": (
        "训练完成，正在评估角色 {name}（与基础模型对比）…",
        "Training finished; evaluating persona {name} against the base model…",
    ),
    "train.eval.title": (
        "**角色评估**：{name} 与基础模型 · {prompts} 个样本（{source}）",
        "**Persona check**: {name} vs the base model · {prompts} prompts ({source})",
    ),
    "train.eval.metric": ("指标", "Metric"),
    "train.eval.base": ("基础模型", "base model"),
    "train.eval.rouge_l": ("ROUGE-L（jieba 分词）↑", "ROUGE-L (jieba tokens) ↑"),
    "train.eval.embedding_cosine": ("向量余弦相似度 ↑", "Embedding cosine ↑"),
    "train.eval.character_score": ("角色分（判别器）↑", "Character score (judge) ↑"),
    "train.eval.catchphrase": ("以「{catchphrase}」结尾的比例", "Share ending with “{catchphrase}”"),
    "train.eval.break_character": ("出戏比例（自称 AI/助手）↓", "Breaks character (claims to be an AI) ↓"),
    "train.eval.stopped": ("自行结束的比例", "Stops by itself"),
    "train.eval.distinct_1": ("distinct-1", "distinct-1"),
    "train.eval.distinct_2": ("distinct-2", "distinct-2"),
    "train.eval.mean_chars": ("平均回复长度（字）", "Mean reply length (chars)"),
    "train.eval.skipped": ("未计算 {metric}：{why}", "{metric} not measured: {why}"),
    "train.eval.saved": ("评估摘要已保存在 {path}", "Summary saved in {path}"),
    "train.eval.failed": (
        "训练完成，但角色评估没有完成：{error}",
        "Training finished, but the persona check did not: {error}",
    ),
    "train.failed": ("训练失败：{error}", "Training failed: {error}"),
    "train.stopped": ("训练进程已结束但没有完成：{error}", "The training process ended without finishing: {error}"),
    "train.log": ("训练日志（末尾）", "Training log (tail)"),
    "train.stop": ("停止训练", "Stop training"),
    "train.stop_eval": ("停止评估（角色已保存）", "Stop the check (the persona is saved)"),
    "train.task": ("训练什么", "What to train"),
    "train.task.persona": ("角色（LoRA 角色适配器）", "Persona (LoRA persona adapter)"),
    "train.task.classify": ("文本分类器", "Text classifier"),
    "train.clf_name": ("分类器名称", "Classifier name"),
    "train.clf_hparams_help": (
        "数据为 CSV/TSV/JSONL，含文本列和标签列（列名可在下方设置）。留空的项使用配置文件 [classify] 中的值。",
        "Data: CSV/TSV/JSONL with a text and a label column (names settable below). "
        "Empty fields use the [classify] values of the config file.",
    ),
    "train.acc_before": ("训练前准确率", "Accuracy before"),
    "train.clf_done": (
        "训练完成：分类器 {name} 验证集准确率 {acc:.3f}。",
        "Training finished: classifier {name}, held-out accuracy {acc:.3f}.",
    ),
    "train.go_classify": ("去分类", "Go to classification"),
    "train.clf_overwrite": ("覆盖已有的分类器 {name}", "Replace the existing classifier {name}"),
    "train.clf_exists": (
        "分类器 {name} 已存在：勾选“覆盖”或换一个名称。",
        "Classifier {name} already exists: tick “replace” or pick another name.",
    ),
    # classifier page
    "clf.title": ("文本分类", "Text classification"),
    "clf.none": (
        "还没有分类器。用 `rolechat train-classifier --data 数据.csv --name 名称` 训练一个"
        "（CSV/TSV/JSONL，含 text 和 label 列）。",
        "No classifier yet. Train one with `rolechat train-classifier --data data.csv --name NAME` "
        "(CSV/TSV/JSONL with text and label columns).",
    ),
    "clf.pick": ("分类器", "Classifier"),
    "clf.broken": ("不可用的分类器（{n}）", "Unavailable classifiers ({n})"),
    "clf.about": (
        "标签：{labels} · 基础模型 {base} · 验证集准确率 {acc} · macro-F1 {f1}",
        "Labels: {labels} · base model {base} · held-out accuracy {acc} · macro-F1 {f1}",
    ),
    "clf.confusion": ("混淆矩阵（验证集）", "Confusion matrix (held-out rows)"),
    "clf.texts": ("要分类的文本（每行一条）", "Texts to classify (one per line)"),
    "clf.upload": (
        "或上传文件（.txt 每行一条；.csv/.tsv/.jsonl 读取文本列）",
        "Or upload a file (.txt: one per line; .csv/.tsv/.jsonl: the text column)",
    ),
    "clf.run": ("分类", "Classify"),
    "clf.empty": ("请先输入或上传文本。", "Type or upload some texts first."),
    "clf.loading": ("正在加载分类器…", "Loading the classifier…"),
    "clf.failed": ("分类失败：{error}", "Classification failed: {error}"),
    "clf.text": ("文本", "Text"),
    "clf.label": ("标签", "Label"),
    "clf.score": ("概率", "Probability"),
    "clf.summary": ("{n} 条文本 · {seconds:.2f} 秒", "{n} texts · {seconds:.2f} s"),
}


def lang() -> str:
    """The session's language code ("zh" unless the user switched)."""
    code = st.session_state.get("lang", "zh")
    return code if code in LANGUAGES else "zh"


def t(key: str, **fields: object) -> str:
    """The string `key` in the session's language, formatted with `fields`."""
    zh, en = STRINGS[key]
    text = en if lang() == "en" else zh
    return text.format(**fields) if fields else text
