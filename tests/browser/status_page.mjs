// Drives Debian's headless chromium through the node's status page, as an administrator would:
// sign in with the token, read the tables, press "C-ECHO" and "Resend". Prints one JSON object.
// Usage: node status_page.mjs BASE_URL TOKEN STUDY_UID DESTINATION_AE
import puppeteer from "puppeteer-core";

const [base, token, studyUid, destAe] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const out = {};
try {
  const page = await browser.newPage();
  await page.goto(base + "/", { waitUntil: "load" });
  out.loginShown = (await page.$("#token")) !== null;
  await page.type("#token", "wrong");
  await Promise.all([page.waitForNavigation(), page.click("#sign-in")]);
  out.wrongTokenRefused = (await page.$("#login-failed")) !== null;
  await page.type("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("#sign-in")]);
  out.cookies = (await page.cookies()).map((c) => ({ name: c.name, value: c.value, httpOnly: c.httpOnly }));
  const row = `tr.study[data-study-uid="${studyUid}"]`;
  out.stateBefore = await page.$eval(`${row} td.state`, (td) => td.textContent.trim());
  out.peers = await page.$$eval("#peers tbody tr td:first-child", (tds) => tds.map((td) => td.textContent.trim()));
  out.refusals = await page.$$eval("#refusals tbody tr", (trs) => trs.map((tr) => tr.textContent));
  await page.click(`${row} summary`);
  out.trail = await page.$$eval(`${row} ol.trail li`, (lis) => lis.map((li) => li.textContent));
  const destRow = `#destinations tr[data-ae-title="${destAe}"]`;
  await Promise.all([page.waitForNavigation(), page.click(`${destRow} button.echo-button`)]);
  out.echoMessage = await page.$eval("#message", (p) => p.textContent.trim());
  out.echoCell = await page.$eval(`${destRow} td.echo`, (td) => td.textContent.trim());
  await Promise.all([page.waitForNavigation(), page.click(`${row} button.resend`)]);
  out.resendMessage = await page.$eval("#message", (p) => p.textContent.trim());
  out.stateAfter = await page.$eval(`${row} td.state`, (td) => td.textContent.trim());
  out.resendButtonAfter = (await page.$(`${row} button.resend`)) !== null;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
