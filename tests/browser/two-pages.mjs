// noted's web page in real headless Chromium: two pages on two replicas of a
// `noted dev` cluster; what one page writes, the other shows live. Then one page
// on a replica of a cluster whose other replicas never start: it says that the
// replica has no quorum.
//
// Environment: NOTED_BIN (default target/debug/noted), CHROMIUM (default
// /usr/bin/chromium), NOTED_ARTIFACTS (default target/artifacts).
// Everything it starts stops by itself: the cluster and the browser are stopped at
// the end, on failure, and when the whole run exceeds RUN_TIMEOUT_MS.

import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const NOTED_BIN = process.env.NOTED_BIN ?? join(ROOT, "target/debug/noted");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.NOTED_ARTIFACTS ?? join(ROOT, "target/artifacts");
const RUN_TIMEOUT_MS = 120_000;
const CLUSTER_START_TIMEOUT_MS = 30_000;
// A note written on one replica must show on another replica's page within this.
const LIVE_WITHIN_MS = 1_000;
// Without the background-networking flags Chromium tries to reach Google's
// services at start-up, and on a closed network its connections then fail.
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const cleanups = [];
async function cleanUp() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch (error) { console.error(`cleanup: ${error.message}`); }
  }
}

const watchdog = setTimeout(async () => {
  console.error(`browser test: still running after ${RUN_TIMEOUT_MS} ms; stopping`);
  await cleanUp();
  process.exit(1);
}, RUN_TIMEOUT_MS);

/** Starts `noted dev` on ports the OS chooses and returns the replicas' URLs. */
function startCluster() {
  const child = spawn(NOTED_BIN, ["dev", "--http-port-base", "0", "--storage", "memory"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
  });
  cleanups.push(() => stopProcess(child));
  let log = "";
  child.stderr.on("data", (chunk) => { log += chunk; });
  return new Promise((resolvePromise, reject) => {
    const urls = [];
    let pending = "";
    const timer = setTimeout(() => reject(new Error(`noted dev printed no URLs in time; its log:\n${log}`)), CLUSTER_START_TIMEOUT_MS);
    child.on("exit", (code) => reject(new Error(`noted dev exited with ${code}; its log:\n${log}`)));
    child.on("error", (error) => reject(new Error(`cannot start ${NOTED_BIN}: ${error.message}`)));
    child.stdout.on("data", (chunk) => {
      pending += chunk;
      for (const match of pending.matchAll(/replica (\d+): (http:\/\/\S+)/g)) urls[Number(match[1])] = match[2];
      if (urls.filter(Boolean).length === 3) {
        clearTimeout(timer);
        resolvePromise(urls);
      }
    });
  });
}

/** A loopback port the OS chose for TCP (or UDP), released for noted to bind. */
function freePort(udp = false) {
  return new Promise((resolvePromise) => {
    if (udp) {
      const socket = createSocket("udp4");
      socket.bind(0, "127.0.0.1", () => {
        const { port } = socket.address();
        socket.close(() => resolvePromise(port));
      });
    } else {
      const server = createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address();
        server.close(() => resolvePromise(port));
      });
    }
  });
}

/** Starts replica 0 of a three-replica vr cluster whose other replicas never start. */
async function startLoneReplica(directory) {
  const replicas = [];
  for (let index = 0; index < 3; index += 1) {
    replicas.push({
      client: `127.0.0.1:${await freePort()}`,
      peer: `127.0.0.1:${await freePort()}`,
      heartbeat: `127.0.0.1:${await freePort(true)}`,
    });
  }
  const config = join(directory, "cluster.json");
  const file = { cluster: 4242, protocol: "vr", secret: `browser-test-${Date.now()}`, replicas, request_timeout_ms: 1000 };
  writeFileSync(config, JSON.stringify(file));
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" };
  delete env.NOTED_SECRET;
  const child = spawn(NOTED_BIN, ["serve", "--config", config, "--id", "0", "--storage", "memory"], { stdio: ["ignore", "ignore", "inherit"], env });
  cleanups.push(() => stopProcess(child));
  const url = `http://${replicas[0].client}/`;
  const deadline = Date.now() + CLUSTER_START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the lone replica exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}healthz`)).ok) return url;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error("the lone replica did not answer in time");
    await new Promise((wake) => setTimeout(wake, 100));
  }
}

function stopProcess(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  return new Promise((resolvePromise) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => { clearTimeout(kill); resolvePromise(); });
    child.kill("SIGTERM");
  });
}

async function openPage(context, url, errors, beforeLoading = async () => {}) {
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`${url}: ${error.message}`));
  await beforeLoading(page);
  await page.goto(url);
  await page.locator("#feed-state.live").waitFor({ timeout: 15_000 });
  // The cluster panel has a row per replica once /status answered.
  await page.locator("#replicas tr").nth(2).waitFor({ timeout: 15_000 });
  return page;
}

function noteTitled(page, title) {
  return page.locator("#notes li", { has: page.locator(".note-title", { hasText: title }) });
}

/** Creates a note through `page`'s form; resolves when its replica acknowledged it. */
async function createNote(page, title, body) {
  await page.fill("#create input[name=title]", title);
  await page.fill("#create textarea[name=body]", body);
  const created = page.waitForResponse((response) => response.request().method() === "POST" && response.url().endsWith("/notes"));
  await page.click("#create button[type=submit]");
  const response = await created;
  if (response.status() !== 201) throw new Error(`creating "${title}" answered ${response.status()}`);
  return Date.now();
}

async function expectLive(page, title, since, what) {
  await noteTitled(page, title).waitFor({ timeout: LIVE_WITHIN_MS * 5 });
  const took = Date.now() - since;
  if (took > LIVE_WITHIN_MS) throw new Error(`${what} took ${took} ms to show on the other page (limit ${LIVE_WITHIN_MS} ms)`);
  console.log(`  ${what}: shown on the other page ${took} ms after it was acknowledged`);
}

async function sideBySide(context, left, right) {
  const shot = async (page) => `data:image/png;base64,${(await page.screenshot({ fullPage: true })).toString("base64")}`;
  const [leftImage, rightImage] = [await shot(left), await shot(right)];
  const board = await context.newPage();
  await board.setViewportSize({ width: 2 * 1100 + 48, height: 760 });
  const html = `<body style="margin:0;padding:16px;background:#c9ced8;display:flex;gap:16px;font:14px system-ui">
    <figure style="margin:0"><figcaption>${left.url()}</figcaption><img style="width:1100px" src="${leftImage}"></figure>
    <figure style="margin:0"><figcaption>${right.url()}</figcaption><img style="width:1100px" src="${rightImage}"></figure></body>`;
  await board.setContent(html);
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, "two-pages.png");
  await board.screenshot({ path, fullPage: true });
  return path;
}

async function main() {
  const urls = await startCluster();
  console.log(`browser test: noted dev on ${urls.join(" ")}`);
  const profile = mkdtempSync(join(tmpdir(), "noted-chromium-"));
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 700 },
    timeout: 30_000,
  });
  cleanups.push(() => context.close());
  const errors = [];
  const first = await openPage(context, urls[0], errors);
  // The second page's feed goes through a route, so that the test can drop it.
  const feeds = [];
  const second = await openPage(context, urls[1], errors, (page) =>
    page.routeWebSocket(/\/notes\/watch/, (feed) => {
      feeds.push({ url: feed.url(), page: feed, server: feed.connectToServer() });
    }));

  const stamp = Date.now().toString(36);
  const title = `Shopping list ${stamp}`;
  await expectLive(second, title, await createNote(first, title, "milk, eggs, coffee"), "a create on replica 0");

  const answer = `Reply from replica 1 ${stamp}`;
  await expectLive(first, answer, await createNote(second, answer, "seen live on replica 0"), "a create on replica 1");

  // An edit on one page shows on the other.
  const edited = `${title} (edited)`;
  await noteTitled(second, title).getByRole("button", { name: "Edit" }).click();
  await second.fill("#notes input[name=title]", edited);
  const patched = second.waitForResponse((response) => response.request().method() === "PATCH");
  await second.getByRole("button", { name: "Save" }).click();
  if ((await patched).status() !== 200) throw new Error("the edit was refused");
  await expectLive(first, edited, Date.now(), "an edit on replica 1");

  // A dropped feed reconnects and resumes after the last commit it saw: a note
  // written while it was away arrives once.
  // (Its own edit arrives through its feed too: after this, nothing is in flight.)
  await noteTitled(second, edited).waitFor();
  const seen = await second.evaluate(() => document.getElementById("feed-state").textContent);
  const dropped = feeds.at(-1);
  await dropped.server.close();
  await dropped.page.close({ code: 4000, reason: "dropped by the test" });
  const away = `Written while the feed was away ${stamp}`;
  await createNote(first, away, "");
  await noteTitled(second, away).waitFor({ timeout: 10_000 });
  const resumedAt = new URL(feeds.at(-1).url).searchParams.get("from");
  if (feeds.length !== 2 || `feed: live at commit ${resumedAt}` !== seen) {
    throw new Error(`the feed should resume after the last commit seen (${seen}), not ${feeds.map((feed) => feed.url)}`);
  }
  // The writing page shows its own note when its feed delivers it, which may come after the other page's.
  await noteTitled(first, away).waitFor({ timeout: 10_000 });
  const counts = await Promise.all([first, second].map((page) => page.locator("#notes li").count()));
  if (counts[0] !== counts[1]) throw new Error(`after resuming the pages show ${counts[0]} and ${counts[1]} notes`);
  console.log(`  a dropped feed resumed with ?from=${resumedAt} and missed nothing`);

  await first.locator("#replicas tr").nth(2).waitFor();
  const roles = await first.locator("#replicas td:nth-child(2)").allTextContents();
  if (!roles.includes("primary")) throw new Error(`the cluster panel shows no primary: ${roles}`);

  const path = await sideBySide(context, first, second);
  console.log(`browser test: screenshot ${path}`);

  // A delete shows too (after the screenshot, which shows both notes).
  const deleted = first.waitForResponse((response) => response.request().method() === "DELETE");
  await noteTitled(first, answer).getByRole("button", { name: "Delete" }).click();
  if ((await deleted).status() !== 204) throw new Error("the delete was refused");
  await noteTitled(second, answer).waitFor({ state: "detached", timeout: LIVE_WITHIN_MS * 5 });

  await first.close();
  await second.close();

  // Alone, a replica has no quorum: the page says so, and says why a write failed.
  const lonely = await openPage(context, await startLoneReplica(profile), errors);
  await lonely.locator("#banner.shown", { hasText: "No quorum" }).waitFor({ timeout: 10_000 });
  await lonely.fill("#create input[name=title]", "written without a quorum");
  await lonely.click("#create button[type=submit]");
  await lonely.locator("#banner.shown", { hasText: "Write refused" }).waitFor({ timeout: 10_000 });
  mkdirSync(ARTIFACTS, { recursive: true });
  await lonely.screenshot({ path: join(ARTIFACTS, "no-quorum.png"), fullPage: true });
  console.log(`  without a quorum: the page says so (screenshot ${join(ARTIFACTS, "no-quorum.png")})`);

  if (errors.length) throw new Error(`the pages threw: ${errors.join("; ")}`);
}

let failed = false;
try {
  await main();
  console.log("browser: 1 passed, 0 failed");
} catch (error) {
  failed = true;
  console.error(`browser test failed: ${error.stack ?? error}`);
} finally {
  await cleanUp();
  clearTimeout(watchdog);
}
process.exit(failed ? 1 : 0);
