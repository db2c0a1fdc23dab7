import type { Metadata } from 'next'
import Link from 'next/link'
import type { ReactNode } from 'react'
import 'prosemirror-view/style/prosemirror.css'
import 'prosemirror-menu/style/menu.css'
import 'prosemirror-example-setup/style/style.css'
import './globals.css'
import OfflineShell from '@/components/OfflineShell'

export const metadata: Metadata = {
  title: 'Collab engine · Next.js example',
  description: 'Collaborative rich text on the collab engine browser SDK'
}

export default function RootLayout ({ children }: { children: ReactNode }) {
  return (
    <html lang='en'>
      <body>
        <header className='top'>
          <Link href='/' className='brand'>Collab engine</Link>
          <nav>
            <Link href='/'>Documents</Link>
            <Link href='/admin'>Admin</Link>
          </nav>
        </header>
        <main>{children}</main>
        <OfflineShell />
      </body>
    </html>
  )
}
