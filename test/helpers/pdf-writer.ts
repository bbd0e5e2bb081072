/** A small PDF writer for tests: real files with a correct xref table, optionally encrypted. */
import { createHash } from 'node:crypto';

export interface TestPage {
  /** The page's content stream; `/F1` is Helvetica, one of the 14 standard fonts (not embedded, so pdf.js needs its font data). */
  stream: string;
  /** The text extractPdf should give for it. */
  text: string;
}

/** A page with one line of 24pt text per entry, 30pt apart, from the top left. */
export function linesPage(...lines: string[]): TestPage {
  const shows = lines.map((line, index) => `${index === 0 ? '' : '0 -30 Td '}(${line.replace(/[()\\]/g, '\\$&')}) Tj`);
  return { stream: `BT /F1 24 Tf 72 700 Td\n${shows.join('\n')}\nET`, text: lines.join('\n') };
}

export interface Encryption {
  userPassword: string;
  ownerPassword: string;
}

/**
 * Writes a PDF with one US Letter page per entry of `pages`, with a correct xref table. With `encryption`, the file uses the Standard security handler, revision 2 (40-bit RC4,
 * PDF 1.7 section 7.6.3): the content streams are really encrypted, so a reader needs the right key.
 */
export function buildPdf(pages: TestPage[], encryption?: Encryption): Buffer {
  const fileId = createHash('md5').update(JSON.stringify(pages)).digest();
  const security = encryption === undefined ? undefined : standardSecurity(encryption, fileId);
  const objects: Buffer[] = [];
  const add = (body: Buffer | string): number => objects.push(Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1'));
  const stream = (number: number, dictionary: string, data: Buffer): Buffer => {
    const bytes = security === undefined ? data : rc4(objectKey(security.key, number), data);
    return Buffer.concat([
      Buffer.from(`<< ${dictionary} /Length ${bytes.length} >>\nstream\n`, 'latin1'),
      bytes,
      Buffer.from('\nendstream'),
    ]);
  };

  add('<< /Type /Catalog /Pages 2 0 R >>');
  add(''); // the page tree, filled in once the kids are numbered
  const font = add('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>');
  const kids: number[] = [];
  for (const page of pages) {
    const contents = add('');
    objects[contents - 1] = stream(contents, '', Buffer.from(page.stream, 'latin1'));
    kids.push(
      add(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 ${font} 0 R >> >> /Contents ${contents} 0 R >>`),
    );
  }
  objects[1] = Buffer.from(`<< /Type /Pages /Kids [${kids.map((kid) => `${kid} 0 R`).join(' ')}] /Count ${kids.length} >>`, 'latin1');
  const encrypt =
    security === undefined
      ? undefined
      : add(
          `<< /Filter /Standard /V 1 /R 2 /O <${security.owner.toString('hex')}> /U <${security.user.toString('hex')}> /P ${security.permissions} >>`,
        );

  const chunks: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let length = chunks[0]!.length;
  const offsets: number[] = [];
  objects.forEach((body, index) => {
    offsets.push(length);
    const chunk = Buffer.concat([Buffer.from(`${index + 1} 0 obj\n`), body, Buffer.from('\nendobj\n')]);
    chunks.push(chunk);
    length += chunk.length;
  });
  const xref = [
    'xref',
    `0 ${objects.length + 1}`,
    '0000000000 65535 f ',
    ...offsets.map((offset) => `${String(offset).padStart(10, '0')} 00000 n `),
  ];
  const trailer = [
    `/Size ${objects.length + 1}`,
    '/Root 1 0 R',
    `/ID [<${fileId.toString('hex')}> <${fileId.toString('hex')}>]`,
    ...(encrypt === undefined ? [] : [`/Encrypt ${encrypt} 0 R`]),
  ];
  chunks.push(Buffer.from(`${xref.join('\n')}\ntrailer\n<< ${trailer.join(' ')} >>\nstartxref\n${length}\n%%EOF\n`, 'latin1'));
  return Buffer.concat(chunks);
}

const PASSWORD_PAD = Buffer.from('28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a', 'hex');
const padPassword = (password: string): Buffer => Buffer.concat([Buffer.from(password, 'latin1'), PASSWORD_PAD]).subarray(0, 32);
const md5 = (...parts: Buffer[]): Buffer => createHash('md5').update(Buffer.concat(parts)).digest();

/** Algorithms 2, 3 and 4 of the Standard security handler, revision 2. */
function standardSecurity({ userPassword, ownerPassword }: Encryption, fileId: Buffer) {
  const permissions = -44; // print, copy and modify forbidden; the reserved bits set as the spec requires
  const owner = rc4(md5(padPassword(ownerPassword)).subarray(0, 5), padPassword(userPassword));
  const permissionBytes = Buffer.alloc(4);
  permissionBytes.writeInt32LE(permissions);
  const key = md5(padPassword(userPassword), owner, permissionBytes, fileId).subarray(0, 5);
  return { key, owner, user: rc4(key, PASSWORD_PAD), permissions };
}

/** Algorithm 1: the per-object key, for generation 0. */
function objectKey(key: Buffer, number: number): Buffer {
  return md5(key, Buffer.from([number & 0xff, (number >> 8) & 0xff, (number >> 16) & 0xff, 0, 0])).subarray(0, key.length + 5);
}

function rc4(key: Buffer, data: Buffer): Buffer {
  const state = Array.from({ length: 256 }, (_, index) => index);
  for (let i = 0, j = 0; i < 256; i += 1) {
    j = (j + state[i]! + key[i % key.length]!) & 0xff;
    [state[i], state[j]] = [state[j]!, state[i]!];
  }
  const out = Buffer.alloc(data.length);
  for (let n = 0, i = 0, j = 0; n < data.length; n += 1) {
    i = (i + 1) & 0xff;
    j = (j + state[i]!) & 0xff;
    [state[i], state[j]] = [state[j]!, state[i]!];
    out[n] = data[n]! ^ state[(state[i]! + state[j]!) & 0xff]!;
  }
  return out;
}
