/**
 * The built bundle asks the page for the shared packages in the ranges package.json declares.
 *
 * @jupyter/builder sets each JupyterLab core package's `requiredVersion` from the JupyterLab it
 * builds against (^4.6.4 with 4.6.4 installed), whatever package.json says; every Lab before
 * that then logs one "Unsatisfied version" warning per package on every page. package.json's
 * `jupyterlab.sharedPackages` restates the ranges so the bundle carries them; this test reads the
 * built remoteEntry (what JupyterLab loads) and fails when the two disagree.
 */
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');
const source = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const outputDir = path.resolve(root, source.jupyterlab.outputDir);

function readBuilt(): { metadata: any; required: Map<string, string> } {
  const metadataFile = path.join(outputDir, 'package.json');
  if (!fs.existsSync(metadataFile)) {
    throw new Error(`no built extension in ${outputDir}: run \`npm run build\` first`);
  }
  const metadata = JSON.parse(fs.readFileSync(metadataFile, 'utf8'));
  const entry = fs.readFileSync(path.join(outputDir, metadata.jupyterlab._build.load), 'utf8');
  // the consume table, as rspack writes it in development and (minified) production builds
  const consume = /shareKey:\s*"([^"]+)",[^}]*?requiredVersion:\s*"([^"]*)"/g;
  const required = new Map<string, string>();
  for (const [, name, range] of entry.matchAll(consume)) {
    required.set(name, range);
  }
  return { metadata, required };
}

describe('the built bundle', () => {
  const { metadata, required } = readBuilt();
  const dependencies: Record<string, string> = source.dependencies;

  it('requires every shared package in the range package.json declares', () => {
    const mismatched = [...required]
      .filter(([name, range]) => name in dependencies && dependencies[name] !== range)
      .map(([name, range]) => `${name}: bundle ${range}, package.json ${dependencies[name]}`);
    expect(mismatched).toEqual([]);
  });

  it('consumes every @jupyterlab package it depends on from the page (none is left out)', () => {
    const jupyterlab = Object.keys(dependencies).filter(n => n.startsWith('@jupyterlab/'));
    expect(jupyterlab.length).toBeGreaterThan(0);
    expect(jupyterlab.filter(name => !required.has(name))).toEqual([]);
  });

  it("ships package.json's own ranges as its metadata", () => {
    expect(metadata.dependencies).toEqual(dependencies);
    expect(metadata.jupyterlab.sharedPackages).toEqual(source.jupyterlab.sharedPackages);
  });
});
